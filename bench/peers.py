"""slurmctld's load from watching sessions, bwvisu against the way its peers watch them.

    python -m bench.peers [SESSIONS] [--rounds 1] [--config /var/lib/bwvisu-minicluster/bwvisu.json]

(or BWVISU_BENCH_SESSIONS=N). SESSIONS jobs (default 1,000) are submitted held (`sbatch --hold`:
pending, using no node), then watched, in one run, three ways:

- JupyterHub's batchspawner: `squeue -h -j <id> -o '%T %B'` per session every 30 s
  (its default state query and poll interval);
- Open OnDemand's session list: per session, ood_core's Slurm adapter `info`, i.e.
  `squeue --all --states=all --noconvert -o <its 45 fields> -j <id>`, every 10 s while the page is
  open (the dashboard's bc_sessions_poll_delay: default and minimum 10,000 ms);
- bwvisu: ONE `squeue --all --states=all --Format=...` for every job, every poll-interval (2 s).

A full minute of each would take minutes of wall time on a small cluster, so each way runs
`rounds` polling rounds as fast as it can and its RPC count is scaled to one minute of its own
interval: RPCs per minute = RPCs per round * 60 / interval. RPCs are slurmctld's own count
(`sdiag`, by user, before and after: no `sdiag -r`, which would need SlurmUser), for the user the
commands run as, which nothing else uses while the bench holds the minicluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.shells import (
    Shell,
    as_user,
    clear,
    close_shells,
    in_parallel,
    minicluster_config,
    open_shells,
    sbatch,
)
from bwvisu_common.settings import load_settings
from scheduler_adapter.domain.slurm import SQUEUE_FORMAT

DEFAULT_CONFIG = "/var/lib/bwvisu-minicluster/bwvisu.json"
BATCHSPAWNER_INTERVAL = 30.0
OOD_INTERVAL = 10.0
OOD_FIELDS = ";".join(f"%{c}" for c in "aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOqPQrStTuUvVwWxXyYzZ")


@dataclass(frozen=True)
class Way:
    name: str
    interval: float  # seconds between two polls of one session (of all of them, for bwvisu)
    command: Callable[[str], list[str]]  # the squeue of one poll, for one session's Slurm id
    per_session: bool = True  # False: one squeue for every session


def batchspawner(slurm_id: str) -> list[str]:
    return ["squeue", "-h", "-j", slurm_id, "-o", "%T %B"]


def ood(slurm_id: str) -> list[str]:
    return ["squeue", "--all", "--states=all", "--noconvert", "-o", OOD_FIELDS, "-j", slurm_id]


def bwvisu(_: str) -> list[str]:
    return ["squeue", "--noheader", "--all", "--states=all", f"--Format={SQUEUE_FORMAT}"]


PEERS = (
    Way("JupyterHub batchspawner", BATCHSPAWNER_INTERVAL, batchspawner),
    Way("Open OnDemand sessions page", OOD_INTERVAL, ood),
)


def rpc_stats(uid: str) -> tuple[int, float]:
    """slurmctld's RPC count for `uid` since its statistics began, and the seconds it spent on them
    (sdiag, by user)."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    by_user = out.split("statistics by user", 1)[-1]
    found = re.search(rf"^\s*{re.escape(uid)}\s+\(\s*\d+\)\s+count:(\d+)\s+ave_time:\d+\s+total_time:(\d+)",
                      by_user, re.MULTILINE)
    return (int(found.group(1)), int(found.group(2)) / 1e6) if found else (0, 0.0)


async def per_round(shells: Sequence[Shell], uid: str, way: Way, ids: Sequence[str],
                    rounds: int) -> tuple[float, float, float]:
    """Per polling round of `way`: slurmctld's RPCs, its seconds spent on them, the wall seconds."""

    async def poll(shell: Shell, slurm_id: str) -> None:
        await as_user(shell, uid, way.command(slurm_id))

    count, busy = rpc_stats(uid)
    started = time.perf_counter()
    for _ in range(rounds):
        if way.per_session:
            await in_parallel(shells, ids, poll)
        else:
            await poll(shells[0], "")
    seconds = (time.perf_counter() - started) / rounds
    after, busy_after = rpc_stats(uid)
    return (after - count) / rounds, (busy_after - busy) / rounds, seconds


async def bench(config: Path, uid: str, sessions: int, rounds: int, clients: int) -> None:
    settings = load_settings(config)
    ours = Way("bwvisu", settings.scheduler.poll_interval, bwvisu, per_session=False)
    shells = await open_shells(settings, clients)
    prefix = f"benchpeers-{secrets.token_hex(3)}-"
    try:
        ids: list[str] = []

        async def submit(shell: Shell, name: str) -> None:
            ids.append(await sbatch(shell, uid, name, hold=True))

        await in_parallel(shells, [f"{prefix}{i}" for i in range(sessions)], submit)
        rpcs: dict[str, float] = {}
        busy: dict[str, float] = {}
        for way in (*PEERS, ours):
            count, spent, seconds = await per_round(shells, uid, way, ids, rounds)
            scale = 60.0 / way.interval
            rpcs[way.name], busy[way.name] = count * scale, spent * scale
            print(f"{way.name:<28} every {way.interval:4.0f} s: {count:7.1f} RPCs a round "
                  f"({seconds:5.1f} s a round here); per minute {rpcs[way.name]:8.0f} RPCs, "
                  f"{busy[way.name]:7.2f} s of slurmctld's time")
        print(f"{sessions} sessions watched; {rounds} round(s) of each way, "
              "scaled to a minute of its interval")
        for way in PEERS:
            print(f"slurmctld load {way.name:<28} / bwvisu: "
                  f"RPCs {rpcs[way.name] / max(rpcs[ours.name], 1e-9):6.1f}x, "
                  f"time {busy[way.name] / max(busy[ours.name], 1e-9):6.1f}x")
    finally:
        await clear(shells[0], uid, prefix)
        close_shells(shells)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sessions", type=int, nargs="?",
                        default=int(os.environ.get("BWVISU_BENCH_SESSIONS", "1000")))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--user", default="bob")
    args = parser.parse_args()
    asyncio.run(bench(minicluster_config(args.config), args.user, args.sessions, args.rounds, args.clients))


if __name__ == "__main__":
    main()
