"""Where one POST /jobs spends its time, SSH aside: the steps of the submit path, timed.

    python -m bench.submit_path [N]

runner-api's Jobs.submit and scheduler-adapter's JobHandlers run in this process, on a throwaway
nats-server and etcd (bench/servers.py), with sbatch answered at once by a FakeCommandRunner:
what is left is bwvisu's own overhead on top of the sbatch. Each port call is timed; the
printout gives the p50 of each step per submit and of the whole submit, one submit at a time.
Needs no cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections import defaultdict
from typing import Any

from bench.servers import servers
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.etcd_election import EtcdElection
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats
from bwvisu_common.live_jobs import LiveJobs
from runner_api.domain.requests import Submission
from runner_api.handlers import Jobs
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.domain.render import SubmitConfig
from scheduler_adapter.domain.users import UserPolicy
from scheduler_adapter.handlers import DURABLE, JobHandlers
from scheduler_adapter.ports import CommandResult
from scheduler_adapter.users import UserGate
from tests.fakes.command_runner import FakeCommandRunner, fake_id
from tests.fakes.job_logs import FakeJobLogs
from tests.fakes.templates import FakeTemplates
from tests.fakes.users import FakeUserDirectory

TEMPLATE = "#!/bin/bash\n#SBATCH --time=1\necho {{job_id}}\n"


class Timed:
    """Every coroutine method of `inner`, timed into `spent[label.method]` (seconds, summed per submit)."""

    def __init__(self, inner: Any, label: str, spent: dict[str, float]) -> None:
        self._inner, self._label, self._spent = inner, label, spent

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                key = f"{self._label}.{name}"
                self._spent[key] = self._spent.get(key, 0.0) + time.perf_counter() - started

        return timed


async def bench(n: int, clients: int, sbatch_seconds: float) -> None:
    spent: dict[str, float] = {}
    with servers() as (nats_url, (etcd_host, etcd_port)):
        nc = await connect_nats([nats_url], "bench")
        events = JetStreamEventStore(nc)
        await events.ensure_stream()
        state = await EtcdStateStore.connect(etcd_host, etcd_port)
        election = EtcdElection([(etcd_host, etcd_port)], "bench")
        runner = FakeCommandRunner().on(["id", "--", "alice"], fake_id({"alice": (1001, ["alice"])}))
        async def sbatch(argv: list[str], script: str | None) -> CommandResult:
            await asyncio.sleep(sbatch_seconds)
            return CommandResult(0, "4711\n", "")

        runner.on(["**"], sbatch)
        slurm = SlurmCli(runner, "bwvisu")
        handlers = JobHandlers(Timed(events, "adapter.events", spent), Timed(state, "adapter.etcd", spent),
                               Timed(slurm, "adapter.slurm", spent), FakeTemplates(["sleep"]),
                               SubmitConfig(home_prefix="/home"), users=UserGate(slurm, UserPolicy()),
                               election=Timed(election, "adapter.election", spent))
        live = LiveJobs(events, state)
        jobs = Jobs(Timed(events, "api.events", spent), live, FakeUserDirectory(["alice"]),
                    FakeTemplates(["sleep"]), FakeJobLogs())
        stop = asyncio.Event()
        caught_up = asyncio.Event()
        follower = asyncio.create_task(live.run(caught_up))
        marks: dict[str, float] = {}

        async def handle(seq: int, event: Any) -> None:
            marks.setdefault("delivered", time.perf_counter())
            await handlers.handle(seq, event)

        consumer = asyncio.create_task(events.consume(DURABLE, handle, stop, concurrency=32))
        await caught_up.wait()
        per_submit: dict[str, list[float]] = defaultdict(list)
        totals: list[float] = []
        rate = 0.0
        try:
            if clients > 1:
                rate = await concurrent_rate(jobs, n, clients)
            for i in range(n + 1 if clients == 1 else 0):
                spent.clear()
                marks.clear()
                started = time.perf_counter()
                await jobs.submit(Submission(uid="alice", template_name="sleep", variables={"seconds": "0"}))
                if i == 0:
                    continue  # warm-up: connections, the lease, the user gate
                totals.append(time.perf_counter() - started)
                spent["(append to the adapter's handler)"] = marks["delivered"] - started
                for key, seconds in spent.items():
                    per_submit[key].append(seconds)
        finally:
            stop.set()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await consumer
            await election.close()
            await state.close()
            await nc.drain()
    print(f"{n} submits one at a time, sbatch answered after {sbatch_seconds * 1000:g} ms "
          "(p50 per submit, ms)")
    for key in sorted(per_submit, key=lambda k: -statistics.median(per_submit[k])):
        print(f"  {key:<32} {statistics.median(per_submit[key]) * 1000:7.2f}")
    if totals:
        print(f"  {'whole Jobs.submit':<32} {statistics.median(totals) * 1000:7.2f}  "
              f"(p95 {statistics.quantiles(totals, n=20)[-1] * 1000:.2f}, max {max(totals) * 1000:.2f})")
    if rate:
        print(f"{n} submits from {clients} clients at once: {rate:.1f}/s; mean per submit, ms:")
        for key in sorted(spent, key=lambda k: -spent[k]):
            print(f"  {key:<32} {spent[key] / n * 1000:7.2f}")


async def concurrent_rate(jobs: Jobs, n: int, clients: int) -> float:
    """Submits per second with `clients` submitting at once."""
    left = list(range(n))

    async def client() -> None:
        while left:
            left.pop()
            await jobs.submit(Submission(uid="alice", template_name="sleep", variables={"seconds": "0"}))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=50)
    parser.add_argument("--clients", type=int, default=1, help="submit from this many at once (a rate)")
    parser.add_argument("--sbatch-ms", type=float, default=0.0, help="sbatch answers after this long")
    args = parser.parse_args()
    asyncio.run(bench(args.n, args.clients, args.sbatch_ms / 1000))


if __name__ == "__main__":
    main()
