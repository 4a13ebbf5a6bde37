"""Submit latency on the minicluster: POST /jobs and SlurmCli against a bare sbatch.

    python -m bench.submit [N] [--config /var/lib/bwvisu-minicluster/bwvisu.json]

The baseline (`bare_sbatch`) is one `sudo -n -u <uid> sbatch --parsable` with the script on
stdin over an already-open asyncssh connection. Measured against it in the same run:
SlurmCli.submit (our SSH runner), and POST /jobs on a bwvisu started for this run
(`bwvisu up` with its own ports and state), which answers once JobQueued is in the log.
Needs the minicluster (root); each job ends at once.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh
import httpx

from bench.shells import minicluster_config
from bwvisu_cli.testbed import isolated_system, runner_api_client_args
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


async def post_jobs(n: int, config_path: Path, uid: str) -> list[float]:
    """POST /jobs latencies on a bwvisu of its own, started and stopped here."""
    with isolated_system(config_path) as config:
        body = {"uid": uid, "template-name": "sleep", "variables": {"seconds": "0", "runtime": "1"}}
        async with httpx.AsyncClient(**runner_api_client_args(load_settings(config)), timeout=60) as client:

            async def one() -> None:
                (await client.post("/jobs", json=body)).raise_for_status()

            return await timed(n, one)


def line(label: str, values: list[float], base: float) -> str:
    p50 = statistics.median(values)
    return (f"{label:<38} p50 {p50 * 1000:6.1f} ms  p95 {p(values, 95) * 1000:6.1f} ms  "
            f"p50 ratio {p50 / base:.2f}x")


async def bench(n: int, config_path: Path, uid: str) -> None:
    settings = load_settings(config_path)
    conn = await open_connection(settings)
    runner = AsyncSshRunner.from_settings(settings)
    slurm = SlurmCli(runner, settings.scheduler.job_tag)
    try:
        bare = await timed(n, lambda: bare_sbatch(conn, uid))
        ours = await timed(n, lambda: slurm.submit(uid, SCRIPT, new_job_id()))
    finally:
        await runner.close()
        conn.close()
    api = await post_jobs(n, config_path, uid)
    base = statistics.median(bare)
    print(line("bare sbatch over an open connection", bare, base))
    print(line("SlurmCli.submit (AsyncSshRunner)", ours, base))
    print(line("POST /jobs (answered at JobQueued)", api, base))
    print("target: POST /jobs p50 <= 1.2x the bare sbatch")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=20)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()
    asyncio.run(bench(args.n, minicluster_config(args.config), args.user))


if __name__ == "__main__":
    main()
