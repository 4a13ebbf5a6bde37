"""Runs bwvisu's processes as children: starts them in order, restarts one that dies,
stops them all in reverse order on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bwvisu_cli.servers import listening
from bwvisu_common.errors import BwvisuError
from bwvisu_common.logs import JsonFormatter, writes_json
from bwvisu_common.service_process import stop_on_signals

log = logging.getLogger(__name__)

STOP_GRACE = 10.0
MAX_BACKOFF = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `bwvisu up` dies, even by SIGKILL, so that no
    server or service outlives it holding its ports."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class Exit:
    """How a child last ended unasked: its exit code or signal, when, and its log's last lines."""

    code: int
    at: str
    log_tail: str = ""

    @property
    def how(self) -> str:
        if self.code < 0:
            try:
                return f"killed by {signal.Signals(-self.code).name}"
            except ValueError:
                return f"killed by signal {-self.code}"
        return f"exited with code {self.code}"

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "how": self.how, "at": self.at, "log_tail": self.log_tail}


def _start_marker(argv: list[str]) -> str:
    """The line before a child's own: in the log format of `bwvisu up` (JSON logs stay JSON lines)."""
    message = f"starting: {' '.join(argv)}"
    if writes_json():
        record = logging.makeLogRecord({"name": __name__, "levelname": "INFO", "levelno": logging.INFO,
                                        "msg": message})
        return JsonFormatter("bwvisu-up").format(record) + "\n"
    return f"\n--- {time.strftime('%F %T')} {message}\n"


@dataclass
class Child:
    """One supervised process, and where it listens (if it does)."""

    name: str
    argv: list[str]
    log_file: Path
    listen: tuple[str, int] | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    restarts: int = 0
    last_failure: Exit | None = None
    # Run once it listens, on every start (etcd: its users and roles); must be idempotent.
    after_start: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)
    metrics: str = ""  # the URL of its Prometheus /metrics, if it serves them

    @property
    def address(self) -> str:
        return f"{self.listen[0]}:{self.listen[1]}" if self.listen else "-"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def as_dict(self) -> dict[str, object]:
        """What `bwvisu status` shows of this child."""
        return {"name": self.name, "pid": self.pid, "address": self.address, "log": str(self.log_file),
                "restarts": self.restarts, "metrics": self.metrics,
                "last_failure": self.last_failure.as_dict() if self.last_failure else None}

    async def start(self, ready_timeout: float = 30.0) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            out.write(_start_marker(self.argv).encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
                preexec_fn=_die_with_parent,
            )
        if self.listen:
            await self._wait_listening(ready_timeout)
        if self.after_start is not None:
            try:
                await self.after_start()
            except BwvisuError as exc:
                raise ChildFailed(self, str(exc)) from exc

    async def _wait_listening(self, limit: float) -> None:
        assert self.process and self.listen
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise ChildFailed(self, f"exited with code {self.process.returncode}")
            if await asyncio.to_thread(listening, *self.listen):
                return
            await asyncio.sleep(0.1)
        raise ChildFailed(self, f"did not listen on {self.address} within {limit:.0f} s")

    async def stop(self) -> None:
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s; killing it", self.name, STOP_GRACE)
            proc.kill()
            await proc.wait()


class ChildFailed(BwvisuError):
    def __init__(self, child: Child, problem: str) -> None:
        tail = _tail(child.log_file)
        super().__init__(f"{child.name} {problem}; the end of {child.log_file}:\n{tail}")
        self.child = child


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def supervise(children: list[Child], on_started: Callable[[list[Child]], None],
                    on_change: Callable[[list[Child]], None] | None = None) -> None:
    """Start every child in order, then watch them until a stop signal; always stop them all.

    `on_change` hears of every exit and restart after start-up (`bwvisu status` reads it).
    """
    stop = asyncio.Event()
    started: list[Child] = []
    with stop_on_signals(stop):
        try:
            for child in children:
                await child.start()
                started.append(child)
            on_started(started)
            def changed() -> None:
                if on_change is not None:
                    on_change(started)

            watchers = [asyncio.create_task(_keep_running(c, stop, changed)) for c in started]
            await stop.wait()
            for w in watchers:
                w.cancel()
        finally:
            for child in reversed(started):
                await child.stop()


async def _keep_running(child: Child, stop: asyncio.Event, changed: Callable[[], None]) -> None:
    backoff = 1.0
    while not stop.is_set():
        assert child.process is not None
        code = await child.process.wait()
        if stop.is_set():
            return
        child.last_failure = Exit(code, time.strftime("%Y-%m-%dT%H:%M:%S%z"), _tail(child.log_file, 5))
        changed()
        log.error("%s %s; restarting in %.0f s (log: %s)", child.name, child.last_failure.how, backoff,
                  child.log_file)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
        try:
            child.restarts += 1
            await child.start()
            backoff = 1.0
        except ChildFailed as exc:
            log.error("%s", exc)
        changed()
