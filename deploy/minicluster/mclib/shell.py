"""Running commands and looking at processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


class MiniclusterError(Exception):
    """A step of building or tearing down the minicluster failed."""


def say(msg: str) -> None:
    print(f"minicluster: {msg}", flush=True)


def run(argv: Sequence[str], *, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise MiniclusterError(f"{' '.join(argv)} failed ({proc.returncode}): {detail}")
    return proc


def ok(argv: Sequence[str]) -> bool:
    return run(argv, check=False).returncode == 0


def in_ns(ns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def on_host(ns: str, argv: Sequence[str]) -> list[str]:
    """argv inside namespace ns, with its own UTS namespace so `hostname` says ns."""
    return in_ns(ns, ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', ns,
                      *argv])


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int, marker: str) -> bool:
    """True if pid runs and its command line contains marker (guards against pid reuse)."""
    args = cmdline(pid)
    if not args:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and any(marker in a for a in args)


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def pids_matching(marker: str) -> list[int]:
    """Processes whose command line contains marker (an exact path of ours)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and alive(int(entry), marker):
            found.append(int(entry))
    return found


def pids_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                found.append(int(entry))
    return found


def terminate(pids: Iterable[int], timeout: float = 5.0) -> None:
    pids = [p for p in set(pids) if cmdline(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # give the parent (often pid 1, for daemons) a moment to reap them
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def spawn(argv: Sequence[str], logfile: Path, pidfile: Path, **kwargs: object) -> int:
    """Start a foreground daemon detached from us; its pid goes to pidfile."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, **kwargs)  # type: ignore[call-overload]
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def wait_for(what: str, probe, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if time.monotonic() > deadline:
            raise MiniclusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def require_root() -> None:
    if os.geteuid() != 0:
        print("minicluster: must run as root (it creates network namespaces, users and daemons)",
              file=sys.stderr)
        sys.exit(1)


def write_file(path: Path, content: str, mode: int = 0o644) -> bool:
    """Write content if it differs; returns True if the file changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text() == content:
            os.chmod(path, mode)
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True
