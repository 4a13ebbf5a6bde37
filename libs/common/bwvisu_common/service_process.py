"""The one shape of every bwvisu process: connect, follow the read model, run its tasks until a
signal or a dead task (naming it), and close everything on the way out.

Each service's `service.py` reads the same way:

    async def run(settings, args=None, stop=None):
        async with ServiceProcess("runner-api", stop) as process:
            deps = await bootstrap(settings, process.stack)    # connects; closes with the stack
            await process.follow(deps.live, timeout=60)         # the read model, before any answer
            process.spawn("handlers", ...)                       # its end stops the service
            process.serve_http(create_app(deps.jobs, ..., ready=process.healthy), host, port)  # + /metrics
            process.serve_metrics(host, port)                    # or this, for a process without HTTP
            await process.run_until_stopped()

and its `__main__.py` is one call to `service_main`. `stop_on_signals` is the one place a bwvisu
process maps SIGTERM/SIGINT to a stop event (`bwvisu up`'s supervisor uses it too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Protocol, TypeVar

import uvicorn

from bwvisu_common.errors import BwvisuError
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.logs import setup_logging
from bwvisu_common.metrics import ProcessMetrics, ReadModelLag
from bwvisu_common.settings import Settings, load_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long a serving process waits for its read model to catch up before its start counts as failed:
# it answers nothing before (a job just submitted must be found, a session must not look gone).
CATCH_UP_TIMEOUT = 60.0


class _StoppedStarting(Exception):
    """A signal came while the service was still starting."""


class TaskDied(BwvisuError):
    """A task the service cannot do without ended or raised: the process stops and says which."""


class ReadModel(Protocol):
    """What `follow` needs of the job read model (LiveJobs and Projector are both one)."""

    async def run(self, caught_up: asyncio.Event | None = None) -> None: ...


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """While inside: SIGTERM and SIGINT set `stop` (the one place a bwvisu process maps them)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in STOP_SIGNALS:
        # Not available off the main thread or on some platforms: then `stop` alone ends it.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the process's stop event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServiceProcess:
    """One service process: its exit stack, its long-running tasks and its stop event."""

    def __init__(self, name: str, stop: asyncio.Event | None = None) -> None:
        self.name = name
        self.stop = stop or asyncio.Event()
        self.stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[Any]] = []
        self._once: list[asyncio.Task[Any]] = []  # may end without stopping the service
        self._graceful: list[asyncio.Task[Any]] = []  # end on `stop` by themselves (HTTP servers)
        self.metrics = ProcessMetrics()  # what /metrics serves (serve_http, serve_metrics)

    async def __aenter__(self) -> ServiceProcess:
        await self.stack.__aenter__()
        self.stack.enter_context(stop_on_signals(self.stop))  # the last thing the stack undoes
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        self.stop.set()
        try:
            if self._graceful:
                await asyncio.wait(self._graceful, timeout=6)
            for task in (*self._tasks, *self._once):
                task.cancel()
            await asyncio.gather(*self._tasks, *self._once, return_exceptions=True)
        finally:
            await self.stack.__aexit__(exc_type, exc, tb)
            log.info("%s stopped", self.name)
        return exc_type is _StoppedStarting  # a signal while starting is a clean stop

    async def starting(self, work: Awaitable[T]) -> T:
        """`work` (connecting, catching up), unless a signal comes first: then it is cancelled and
        the service stops cleanly; start-up may wait long for NATS or etcd, a stop may not."""
        doing = asyncio.ensure_future(work)
        stopping = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait([doing, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not doing.done():
            doing.cancel()
            await asyncio.gather(doing, return_exceptions=True)
            raise _StoppedStarting()
        return doing.result()

    def spawn(self, name: str, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` for the life of the service: its end (return or raise) stops the service."""
        task = asyncio.create_task(work, name=name)
        self._tasks.append(task)
        return task

    def spawn_once(self, name: str, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` once beside the service (a start-up sweep): its end does not stop the service,
        an error is logged, and it is cancelled on the way out if still running."""
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._log_failure)
        self._once.append(task)
        return task

    def _log_failure(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: %s failed: %r", self.name, task.get_name(), task.exception())

    def healthy(self) -> bool:
        """Not stopping, and every task still runs: what a health check reports."""
        return not self.stop.is_set() and not any(task.done() for task in self._tasks)

    async def follow(self, jobs: ReadModel, *, timeout: float | None = None) -> None:
        """Follow the job read model for the life of the service; return once it has caught up."""
        caught_up = asyncio.Event()
        if isinstance(jobs, LiveJobs):
            lag = ReadModelLag(jobs, jobs.stream_last_seq)
            self.metrics.add(lag, lag.sample)
        self.spawn("read-model", jobs.run(caught_up))
        waiter = asyncio.create_task(caught_up.wait())
        try:
            await asyncio.wait_for(self.starting(self._first_of(waiter)), timeout)
        except TimeoutError:
            raise TaskDied(f"{self.name}: the read model did not catch up within {timeout:.0f} s") from None
        finally:
            waiter.cancel()
        self._raise_if_died()

    def serve_http(self, app: Any, host: str, port: int, *, tls_cert: str = "", tls_key: str = "",
                   proxy_headers: bool = False) -> None:
        """Serve a FastAPI app, with this process's /metrics added, until the service stops; open event
        streams get two seconds."""
        self.metrics.mount(app)
        self._graceful.append(self.spawn("http", self._serve(app, host, port, tls_cert=tls_cert,
                                                             tls_key=tls_key, proxy_headers=proxy_headers)))

    def serve_metrics(self, host: str, port: int) -> None:
        """/metrics alone on host:port, for a process without an HTTP server (port 0: not served).

        Metrics are no reason to stop a service: a port it cannot bind is logged, and it runs on."""
        if port:
            self._graceful.append(self.spawn_once("metrics", self._serve(self.metrics.app(), host, port)))

    async def _serve(self, app: Any, host: str, port: int, *, tls_cert: str = "", tls_key: str = "",
                     proxy_headers: bool = False) -> None:
        server = _QuietServer(uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
            proxy_headers=proxy_headers, timeout_graceful_shutdown=2,
            # uvicorn's own lines go through the root logger's formatter (masked), not its own.
            log_config=None,
            ssl_certfile=tls_cert or None, ssl_keyfile=tls_key or None))

        async def listen() -> None:
            try:
                await server.serve()
            except SystemExit:  # uvicorn's answer to a port it cannot bind (logged by uvicorn)
                raise TaskDied(f"{self.name}: the HTTP server could not listen on {host}:{port}") from None

        serving = asyncio.create_task(listen())
        stopping = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not stopping.done():
                serving.result()  # a bind error raises here
                raise TaskDied(f"the HTTP server on {host}:{port} stopped")
            server.should_exit = True
            await asyncio.wait_for(serving, 5)
        finally:
            stopping.cancel()
            serving.cancel()

    async def run_until_stopped(self) -> None:
        """Until a signal (or `stop`); raises TaskDied, naming it, if a task ends first."""
        log.info("%s running", self.name)
        waiter = asyncio.create_task(self.stop.wait())
        try:
            await self._first_of(waiter)
        finally:
            waiter.cancel()
        if not self.stop.is_set():
            self._raise_if_died()

    async def _first_of(self, waiter: asyncio.Task[Any]) -> None:
        await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)

    def _raise_if_died(self) -> None:
        for task in self._tasks:
            if not task.done():
                continue
            error = None if task.cancelled() else task.exception()
            why = f"raised {error!r}" if error is not None else "ended"
            log.error("%s: task %s %s; stopping", self.name, task.get_name(), why)
            self.stop.set()
            raise TaskDied(f"{self.name}: task {task.get_name()} {why}") from error


def service_main(name: str, description: str, run: Callable[..., Awaitable[None]],
                 argv: list[str] | None = None,
                 add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                 instance: Callable[[argparse.Namespace], str] | None = None) -> int:
    """`python -m <service> --config PATH [...]`: settings, logging, `run(settings, args)`, exit code.

    `instance` names one of several processes of a service in its log lines (a gateway's agent).
    Exit codes: 0 stopped by a signal, 1 failed while running, 2 bad configuration.
    """
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("--config", help="configuration file (default: $BWVISU_CONFIG)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if instance is not None:
        name = f"{name}[{instance(args)}]"
    try:
        settings = load_settings(args.config)
    except BwvisuError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    setup_logging(name, fmt=settings.logging.format)
    try:
        asyncio.run(_call(run, settings, args))
    except BwvisuError as exc:
        log.error("%s", exc)
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


async def _call(run: Callable[..., Awaitable[None]], settings: Settings, args: argparse.Namespace) -> None:
    await run(settings, args)
