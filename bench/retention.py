"""Many job lifecycles through LiveJobs and the projector, with and without retention.

    python -m bench.retention [ROUNDS] [JOBS_PER_ROUND]

Each round is an hour of simulated time: its jobs start and finish within it. With retention
(finished jobs kept for 2 hours) the memory this process holds and the jobs etcd holds stay
flat from an early round to the last (ratio late/early ~1); the baseline, which keeps every job,
grows with the rounds. Both run in this process, each against its own nats-server and etcd.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from bench.events import job_events
from bench.servers import servers
from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.projector import Projector

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass
class Sample:
    memory: int  # bytes traced by tracemalloc
    etcd_jobs: int


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def lifecycle(job: str, at: datetime) -> list[ev.Event]:
    """bench.events' lifecycle, at simulated time `at`."""
    return [msgspec.structs.replace(e, time=at) for e in job_events(job)]


async def until_caught_up(follower: LiveJobs, target: int) -> None:
    while follower.seq < target:
        await follower.changed(follower.seq, 5.0)


async def run(rounds: int, per_round: int, kept_for: timedelta) -> list[Sample]:
    """One sample per round, after its jobs ended and the due ones were forgotten."""
    samples = []
    with servers() as (nats_url, (etcd_host, etcd_port)):
        nc = await connect_nats([nats_url], "bench")
        store = JetStreamEventStore(nc)
        await store.ensure_stream()
        state = await EtcdStateStore.connect(etcd_host, etcd_port)
        clock = Clock()
        projector = Projector(store, state, kept_for=kept_for, clock=clock)
        live = LiveJobs(store, state, kept_for=kept_for, clock=clock)
        tasks = [asyncio.create_task(projector.run()), asyncio.create_task(live.run())]
        try:
            for n in range(rounds):
                clock.now = T0 + n * HOUR
                for _ in range(per_round):
                    await store.append(lifecycle(ev.new_job_id(), clock.now), 0)
                target = await store.last_seq()
                await until_caught_up(projector, target)
                await until_caught_up(live, target)
                await projector.forget_finished()
                await live.forget_finished()
                gc.collect()
                etcd_jobs = len((await state.load_jobs())[0])
                samples.append(Sample(tracemalloc.get_traced_memory()[0], etcd_jobs))
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.close()
            await nc.drain()
    return samples


async def bench(rounds: int, per_round: int) -> None:
    tracemalloc.start()
    early = max(rounds // 4, 3)  # retention (2 h) has reached its steady state by then
    print(f"{rounds} rounds x {per_round} lifecycles ({per_round * len(job_events('x'))} events/round); "
          f"early = round {early}, late = round {rounds}")
    ratios = {}
    for label, kept_for in (("baseline (keeps every job)", timedelta(days=3650)),
                            ("retention 2 h", 2 * HOUR)):
        samples = await run(rounds, per_round, kept_for)
        first, last = samples[early - 1], samples[-1]
        memory, keys = last.memory / first.memory, last.etcd_jobs / max(first.etcd_jobs, 1)
        ratios[label] = (memory, keys)
        print(f"{label:<28} memory {first.memory / 1e6:7.2f} -> {last.memory / 1e6:7.2f} MB "
              f"ratio {memory:.2f}x  etcd jobs {first.etcd_jobs:6d} -> {last.etcd_jobs:6d} ratio {keys:.2f}x")
    (base_mem, base_keys), (kept_mem, kept_keys) = ratios.values()
    print(f"retention vs baseline: memory growth {kept_mem / base_mem:.2f}x, "
          f"etcd growth {kept_keys / base_keys:.2f}x (flat: late/early ~1 with retention)")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(bench(*(args + [20, 50][len(args):])))
