"""What metrics cost: one scrape of a process that holds N jobs (the projector's /metrics, jobs by state
counted at scrape time), and the timing of an instrumented coroutine, each against its bare baseline
measured in the same run.

    python -m bench.metrics [N]

Bounds (ours): a scrape with 10,000 jobs < 10 ms (a scrape comes every 15 s or so); timing a
coroutine adds < 5 us per call (submissions take tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Histogram

from bwvisu_common.job_facts import JobState
from bwvisu_common.metrics import JobStates, ProcessMetrics, timed
from bwvisu_common.read_model import JobView

SCRAPE_BOUND = 0.010
TIMING_BOUND = 5e-6


async def per_call(work: Callable[[], Awaitable[object]], rounds: int) -> float:
    await work()
    start = time.perf_counter()
    for _ in range(rounds):
        await work()
    return (time.perf_counter() - start) / rounds


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    states = list(JobState)
    jobs = [JobView(job_id=f"{i:016x}", state=states[i % len(states)]) for i in range(n)]
    bare, projector = ProcessMetrics(), ProcessMetrics()
    projector.add(JobStates(lambda: jobs))
    base = await per_call(bare.render, 50)
    scrape = await per_call(projector.render, 50)
    print(f"scrape: {scrape * 1000:.2f} ms with {n} jobs, {base * 1000:.2f} ms without "
          f"(x{scrape / base:.2f}); bound {SCRAPE_BOUND * 1000:.0f} ms: {scrape / SCRAPE_BOUND:.2f} of it")

    histogram = Histogram("bwvisu_bench_seconds", "a benchmark's work", registry=CollectorRegistry())

    async def work() -> int:
        return 1

    plain = await per_call(work, 200_000)
    measured = await per_call(timed(histogram)(work), 200_000)
    added = measured - plain
    print(f"timed(): {measured * 1e6:.2f} us per call against {plain * 1e6:.2f} us bare "
          f"(x{measured / plain:.2f}), {added * 1e6:.2f} us added; "
          f"bound {TIMING_BOUND * 1e6:.0f} us: {added / TIMING_BOUND:.2f} of it")


if __name__ == "__main__":
    asyncio.run(main())
