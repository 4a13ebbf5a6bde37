"""Throughput on the minicluster: many submits and cancels through bwvisu against bare sbatch/scancel.

    python -m bench.throughput [N] [--clients 8] [--config /var/lib/bwvisu-minicluster/bwvisu.json]

(or BWVISU_BENCH_JOBS=N). In one run, with the same number of parallel workers on both sides:

- bare: N `sbatch` from `clients` shells, each over its own open SSH connection to login0, then
  N `scancel` (one per job) from as many shells, timed until Slurm's queue holds none of them;
- bwvisu (`bwvisu up` of its own, bench/submit.py's way): N POST /jobs from `clients` HTTP
  clients, then N DELETE /jobs/<id>, timed until Slurm holds none and GET /jobs lists none.

Targets: submits >= 0.8x the bare throughput; cancels <= 1.5x the bare time. Every job sleeps
until cancelled; jobs a broken run leaves behind are cancelled on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import httpx

from bench.shells import (
    as_user,
    clear,
    close_shells,
    cpu_busy,
    cpu_by_process,
    in_parallel,
    minicluster_config,
    open_shells,
    sbatch,
    until_gone,
)
from bwvisu_cli.testbed import isolated_system, runner_api_client_args
from bwvisu_common.settings import load_settings

DEFAULT_CONFIG = "/var/lib/bwvisu-minicluster/bwvisu.json"
SUBMIT_TARGET = 0.8  # at least this share of the bare submit rate
CANCEL_TARGET = 1.5  # at most this multiple of the bare cancel time


@dataclass(frozen=True)
class Run:
    submit_seconds: float
    cancel_seconds: float
    submit_cpu: float = 0.0  # CPU-seconds the machine was busy while submitting
    by_process: dict[str, float] = field(default_factory=dict)  # bwvisu's processes' CPU-seconds then


async def bare(config: Path, uid: str, n: int, clients: int) -> Run:
    settings = load_settings(config)
    shells = await open_shells(settings, clients)
    prefix = f"benchthr-{secrets.token_hex(3)}-"
    ids: list[str] = []
    try:
        async def submit(shell: asyncssh.SSHClientConnection, name: str) -> None:
            ids.append(await sbatch(shell, uid, name))

        cpu = cpu_busy()
        submit_seconds = await in_parallel(shells, [f"{prefix}{i}" for i in range(n)], submit)
        cpu = cpu_busy() - cpu

        async def cancel(shell: asyncssh.SSHClientConnection, slurm_id: str) -> None:
            await as_user(shell, uid, ["scancel", slurm_id])

        started = time.perf_counter()
        await in_parallel(shells, ids, cancel)
        await until_gone(shells[0], uid, prefix)
        return Run(submit_seconds, time.perf_counter() - started, cpu)
    finally:
        await clear(shells[0], uid, prefix)
        close_shells(shells)


async def through_bwvisu(config: Path, uid: str, n: int, clients: int) -> Run:
    # BWVISU_BENCH_DIR: keep the system's state and logs there, to look at afterwards.
    keep = os.environ.get("BWVISU_BENCH_DIR")
    with isolated_system(config, Path(keep) if keep else None) as own:
        settings = load_settings(own)
        shells = await open_shells(settings, 1)
        prefix = settings.scheduler.job_tag + "-"
        try:
            args = runner_api_client_args(settings)
            async with httpx.AsyncClient(**args, timeout=120) as first:
                await post(first, uid)  # warm-up: connections open, the user known (cancelled below)
            apis = [httpx.AsyncClient(**args, timeout=120) for _ in range(clients)]
            try:
                return await submit_and_cancel(apis, shells[0], uid, n, prefix, str(own.parent))
            finally:
                await asyncio.gather(*(api.aclose() for api in apis))
        finally:
            await clear(shells[0], uid, prefix)
            close_shells(shells)


async def post(api: httpx.AsyncClient, uid: str) -> str:
    body = {"uid": uid, "template-name": "sleep", "variables": {"seconds": "900", "runtime": "15"}}
    answer = await api.post("/jobs", json=body)
    answer.raise_for_status()
    return str(answer.json()["job-id"])


async def submit_and_cancel(apis: Sequence[httpx.AsyncClient], shell: asyncssh.SSHClientConnection,
                            uid: str, n: int, prefix: str, marker: str) -> Run:
    job_ids: list[str] = []
    pending = list(range(n))

    async def submitter(api: httpx.AsyncClient) -> None:
        while pending:
            pending.pop()
            job_ids.append(await post(api, uid))

    started, cpu, each = time.perf_counter(), cpu_busy(), cpu_by_process(marker)
    await asyncio.gather(*(submitter(api) for api in apis))
    submit_seconds, cpu = time.perf_counter() - started, cpu_busy() - cpu
    by_process = {k: v - each.get(k, 0.0) for k, v in cpu_by_process(marker).items()}
    # The warm-up's job too: the API must list none at the end.
    listed = (await apis[0].get("/jobs", params={"uid": uid})).json()["jobs"]
    to_cancel = list(listed)

    async def canceller(api: httpx.AsyncClient) -> None:
        while to_cancel:
            (await api.delete(f"/jobs/{to_cancel.pop()}", params={"uid": uid})).raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(canceller(api) for api in apis))
    await until_gone(shell, uid, prefix)
    await until_listed_none(apis[0], uid)
    return Run(submit_seconds, time.perf_counter() - started, cpu, by_process)


async def until_listed_none(api: httpx.AsyncClient, uid: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not (await api.get("/jobs", params={"uid": uid})).json()["jobs"]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"GET /jobs still lists jobs after {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def bench(config: Path, uid: str, n: int, clients: int) -> None:
    base = await bare(config, uid, n, clients)
    ours = await through_bwvisu(config, uid, n, clients)
    submit_ratio = base.submit_seconds / ours.submit_seconds
    cancel_ratio = ours.cancel_seconds / base.cancel_seconds
    print(f"{n} jobs, {clients} clients/shells in parallel")
    print(f"submits  bare sbatch   {n / base.submit_seconds:7.1f}/s ({base.submit_seconds:6.1f} s)")
    print(f"submits  POST /jobs    {n / ours.submit_seconds:7.1f}/s ({ours.submit_seconds:6.1f} s)  "
          f"ratio {submit_ratio:.2f}x of bare (target >= {SUBMIT_TARGET}x)")
    cores = os.cpu_count() or 1
    for label, run in (("bare sbatch", base), ("POST /jobs", ours)):
        print(f"CPU while submitting, {label:<12} {run.submit_cpu / n * 1000:6.1f} ms per job, "
              f"{run.submit_cpu / run.submit_seconds / cores:4.0%} of {cores} cores (the whole machine)")
    heaviest = sorted(ours.by_process.items(), key=lambda kv: -kv[1])
    print("CPU per job while submitting, by bwvisu process (ms): "
          + ", ".join(f"{name} {seconds / n * 1000:.1f}" for name, seconds in heaviest))
    print(f"cancels  bare scancel  {base.cancel_seconds:7.1f} s until gone from Slurm")
    print(f"cancels  DELETE /jobs  {ours.cancel_seconds:7.1f} s until gone from Slurm and the API  "
          f"ratio {cancel_ratio:.2f}x of bare (target <= {CANCEL_TARGET}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=int(os.environ.get("BWVISU_BENCH_JOBS", "1000")))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()
    asyncio.run(bench(minicluster_config(args.config), args.user, args.n, args.clients))


if __name__ == "__main__":
    main()
