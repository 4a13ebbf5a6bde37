"""Submit latency on the minicluster: our SlurmCli over AsyncSshRunner against a bare sbatch.

    python -m bench.submit [N] [--config /var/lib/bwvisu-minicluster/bwvisu.json]

The baseline (`bare_sbatch`) is what DESIGN.md section 8 measures POST /jobs against: one
`sudo -n -u <uid> sbatch --parsable` with the script on stdin over an already-open asyncssh
connection. Needs the minicluster (root); each job is `true` and ends at once.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncssh

from bwvisu_common.events import new_job_id
from bwvisu_common.settings import Settings, load_settings
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.adapters.ssh import AsyncSshRunner

SCRIPT = "#!/bin/bash\n#SBATCH --time=1\n#SBATCH --output=/dev/null\ntrue\n"
DEFAULT_CONFIG = "/var/lib/bwvisu-minicluster/bwvisu.json"


async def open_connection(settings: Settings) -> asyncssh.SSHClientConnection:
    """An asyncssh connection to the first command node, host key verified."""
    node = settings.command_nodes[0]
    return await asyncssh.connect(node.ip, port=node.port, username=node.user, config=[],
                                  client_keys=[settings.ssh.key_file], known_hosts=settings.ssh.known_hosts)


async def bare_sbatch(conn: asyncssh.SSHClientConnection, uid: str, script: str = SCRIPT) -> str:
    """The baseline: one sbatch over an open connection; returns the Slurm id."""
    argv = ["sudo", "-n", "-u", uid, "sbatch", "--parsable", f"--job-name=bench-{new_job_id()}"]
    done = await conn.run(shlex.join(argv), input=script, check=True)
    return str(done.stdout).strip().split(";")[0]


async def timed(n: int, one: Callable[[], Awaitable[object]]) -> list[float]:
    await one()  # warm-up: connections open, caches filled
    seconds = []
    for _ in range(n):
        t0 = time.perf_counter()
        await one()
        seconds.append(time.perf_counter() - t0)
    return seconds


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def bench(n: int, settings: Settings, uid: str) -> None:
    conn = await open_connection(settings)
    runner = AsyncSshRunner.from_settings(settings)
    slurm = SlurmCli(runner, settings.scheduler.job_tag)
    try:
        bare = await timed(n, lambda: bare_sbatch(conn, uid))
        ours = await timed(n, lambda: slurm.submit(uid, SCRIPT, new_job_id()))
    finally:
        await runner.close()
        conn.close()
    b50, o50 = statistics.median(bare), statistics.median(ours)
    print(f"bare sbatch over an open connection: p50 {b50 * 1000:.1f} ms, p95 {p(bare, 95) * 1000:.1f} ms")
    print(f"SlurmCli.submit (AsyncSshRunner):    p50 {o50 * 1000:.1f} ms, p95 {p(ours, 95) * 1000:.1f} ms")
    print(f"ratio p50 {o50 / b50:.2f}x (POST /jobs target <= 1.5x of the bare sbatch)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=20)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()
    asyncio.run(bench(args.n, load_settings(args.config), args.user))


if __name__ == "__main__":
    main()
