"""Times chosen coroutine methods of the services in every process that imports them (benchmarks only).

bench/submit_trace.py puts this directory on PYTHONPATH of a `bwvisu up` it starts, with
BWVISU_TRACE_DIR set: each process then appends `label start end` lines (time.time(), seconds) to
<dir>/<pid>.trace, one per call of the methods in TRACED. Nothing happens without BWVISU_TRACE_DIR.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
import time
from typing import Any

# module -> the attributes timed in it ("Class.method" or a module-level function)
TRACED: dict[str, tuple[str, ...]] = {
    "runner_api.handlers": ("Jobs.submit",),
    "runner_api.app": ("create_app",),
    "bwvisu_common.live_jobs": ("LiveJobs.wait_for", "LiveJobs._apply"),
    "bwvisu_common.adapters.jetstream": ("JetStreamEventStore.append", "JetStreamEventStore.read_job",
                                         "_handle_one"),
    "bwvisu_common.adapters.etcd": ("EtcdStateStore.get_secret", "EtcdStateStore.put_secret",
                                    "EtcdStateStore.save_jobs"),
    "bwvisu_common.adapters.etcd_election": ("EtcdElection.campaign", "EtcdElection.resign"),
    "scheduler_adapter.handlers": ("JobHandlers.on_submitted", "JobHandlers._decide", "JobHandlers._submit",
                                   "JobHandlers._append_decision"),
    "scheduler_adapter.users": ("UserGate.refusal",),
    "scheduler_adapter.adapters.slurm": ("SlurmCli.submit",),
    "scheduler_adapter.adapters.ssh": ("AsyncSshRunner.run", "AsyncSshRunner._session"),
}

_fd = -1


def _write(label: str, started: float, ended: float) -> None:
    os.write(_fd, f"{label} {started:.6f} {ended:.6f}\n".encode())


def _timed_coroutine(label: str, fn: Any) -> Any:
    @functools.wraps(fn)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.time()
        try:
            return await fn(*args, **kwargs)
        finally:
            _write(label, started, time.time())

    return timed


def _timed_asgi(app_factory: Any) -> Any:
    """create_app's app, each HTTP request timed from its arrival to its last byte sent."""

    @functools.wraps(app_factory)
    def make(*args: Any, **kwargs: Any) -> Any:
        app = app_factory(*args, **kwargs)
        inner = app.build_middleware_stack

        def build() -> Any:
            stack = inner()

            async def asgi(scope: Any, receive: Any, send: Any) -> None:
                if scope.get("type") != "http":
                    await stack(scope, receive, send)
                    return
                started = time.time()
                try:
                    await stack(scope, receive, send)
                finally:
                    _write(f"http.{scope.get('method')}", started, time.time())

            return asgi

        app.build_middleware_stack = build
        return app

    return make


def _patch(module: Any) -> None:
    for name in TRACED.get(module.__name__, ()):
        owner: Any = module
        *path, attr = name.split(".")
        for part in path:
            owner = getattr(owner, part)
        fn = getattr(owner, attr)
        label = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
        setattr(owner, attr, _timed_asgi(fn) if attr == "create_app" else _timed_coroutine(label, fn))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in TRACED:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("BWVISU_TRACE_DIR"):
    _fd = os.open(os.path.join(os.environ["BWVISU_TRACE_DIR"], f"{os.getpid()}.trace"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(_fd, b"argv " + open("/proc/self/cmdline", "rb").read().replace(b"\0", b"_") + b" 0 0\n")
    sys.meta_path.insert(0, _Finder())
