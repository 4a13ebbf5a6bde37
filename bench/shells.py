"""The baselines' side: parallel shells on a command node, each over its own open SSH connection,
running Slurm's commands as a user (sudo), as an operator's scripts would."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncssh

from bwvisu_common.settings import Settings

Shell = asyncssh.SSHClientConnection
HELD_SCRIPT = "#!/bin/bash\n#SBATCH --time=15\n#SBATCH --output=/dev/null\nsleep 900\n"


async def open_shells(settings: Settings, count: int, node: int = 0) -> list[asyncssh.SSHClientConnection]:
    """`count` connections to a command node, host keys verified."""
    spec = settings.command_nodes[node]

    async def one() -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(spec.ip, port=spec.port, username=spec.user, config=[],
                                      client_keys=[settings.ssh.key_file],
                                      known_hosts=settings.ssh.known_hosts)

    return list(await asyncio.gather(*(one() for _ in range(count))))


def close_shells(shells: Sequence[asyncssh.SSHClientConnection]) -> None:
    for shell in shells:
        shell.close()


async def as_user(shell: asyncssh.SSHClientConnection, uid: str, argv: Sequence[str],
                  input: str | None = None) -> str:
    """Run argv as `uid` over `shell`; its stdout. Raises on a non-zero exit."""
    done = await shell.run(shlex.join(["sudo", "-n", "-u", uid, *argv]), input=input, check=True)
    return str(done.stdout)


async def in_parallel(shells: Sequence[asyncssh.SSHClientConnection], items: Sequence[str],
                      one: Callable[[asyncssh.SSHClientConnection, str], Awaitable[object]]) -> float:
    """Each shell works through the items one at a time, all shells at once; the seconds taken."""
    queue = list(reversed(items))

    async def shell_loop(shell: asyncssh.SSHClientConnection) -> None:
        while queue:
            await one(shell, queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(shell_loop(s) for s in shells))
    return time.perf_counter() - started


async def sbatch(shell: asyncssh.SSHClientConnection, uid: str, name: str, script: str = HELD_SCRIPT,
                 *, hold: bool = False) -> str:
    """One sbatch as `uid`; the Slurm id. `hold`: the job stays pending (held), using no node."""
    argv = ["sbatch", "--parsable", f"--job-name={name}", *(["--hold"] if hold else [])]
    out = await as_user(shell, uid, argv, script)
    return out.strip().split(";")[0]


async def names_in_queue(shell: asyncssh.SSHClientConnection, uid: str, prefix: str) -> list[tuple[str, str]]:
    """(Slurm id, name) of `uid`'s jobs still in Slurm's queue (not ended) whose name starts with `prefix`."""
    out = await as_user(shell, uid, ["squeue", "--noheader", f"--users={uid}", "--format=%i %j"])
    pairs = [line.split(" ", 1) for line in out.splitlines() if " " in line]
    return [(i, n) for i, n in pairs if n.startswith(prefix)]


async def until_gone(shell: asyncssh.SSHClientConnection, uid: str, prefix: str,
                     timeout: float = 600) -> None:
    """Until Slurm's queue holds none of these jobs."""
    deadline = time.monotonic() + timeout
    while True:
        if not await names_in_queue(shell, uid, prefix):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs named {prefix}* still in Slurm after {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def clear(shell: asyncssh.SSHClientConnection, uid: str, prefix: str) -> None:
    """Cancel whatever a run left behind (an interrupted run)."""
    ids = [i for i, _ in await names_in_queue(shell, uid, prefix)]
    for start in range(0, len(ids), 200):
        await shell.run(shlex.join(["sudo", "-n", "-u", uid, "scancel", *ids[start:start + 200]]))


def cpu_busy() -> float:
    """Seconds of CPU time the whole machine spent busy so far (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(marker: str) -> dict[str, float]:
    """CPU-seconds so far of every process whose command line holds `marker`, by a short name."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if not any(marker in w for w in words):
            continue
        name = _short_name(words)
        found[name] = found.get(name, 0.0) + (int(stat[11]) + int(stat[12])) / ticks
    return found


def _short_name(argv: list[str]) -> str:
    if "-m" in argv:
        module = argv[argv.index("-m") + 1]
        return f"{module} {argv[-1]}" if module == "gateway_agent" else module
    return Path(argv[0]).name


def minicluster_config(path: str) -> Path:
    """The minicluster's bwvisu config at `path`; exits with what to do when it is not up."""
    if not Path(path).exists():
        sys.exit(f"{path} does not exist: bring the minicluster up first (deploy/minicluster/minicluster up)")
    return Path(path)
