"""The watcher's cost at scale: parse + diff of a 10,000-line squeue answer, and squeue calls per cycle.

    python -m bench.scheduler [N]

Targets (DESIGN.md section 8): parse + diff of 10,000 jobs < 0.5 s; exactly 1 squeue per
poll cycle whatever the job count. Prints the numbers and their ratio to the target.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bwvisu_common import events as ev
from bwvisu_common.read_model import JobView, evolve
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.domain.slurm import parse_squeue
from scheduler_adapter.domain.watch import diff
from scheduler_adapter.watcher import Watcher
from tests.fakes.command_runner import FakeCommandRunner
from tests.fakes.event_store import InMemoryEventStore

TARGET_SECONDS = 0.5
STATES = ("PENDING", "RUNNING", "RUNNING", "COMPLETING", "COMPLETED")


def synthetic(n: int) -> tuple[str, list[JobView]]:
    """n of our jobs (plus as many foreign ones) in squeue, and the projection of ours."""
    lines, views = [], []
    for i in range(n):
        job_id = f"{i:016x}"
        state = STATES[i % len(STATES)]
        nodes = "" if state == "PENDING" else f"cn[{i % 100:03d}-{i % 100 + 3:03d}],gpu[01-02]"
        lines.append(f"{1000 + i}|{state}|{'Resources' if state == 'PENDING' else 'None'}|{nodes}"
                     f"|user{i % 50}|0|bwvisu-{job_id}")
        lines.append(f"{900000 + i}|RUNNING|None|cn0|other|0|someone-elses-job-{i}")
        view = evolve(None, ev.JobSubmitted(job_id=job_id, uid=f"user{i % 50}", template_name="t"), 2 * i + 1)
        views.append(evolve(view, ev.JobQueued(job_id=job_id, slurm_id=str(1000 + i)), 2 * i + 2))
    return "\n".join(lines) + "\n", views


def parse_and_diff(text: str, views: list[JobView]) -> tuple[float, int]:
    t0 = time.perf_counter()
    entries = parse_squeue(text, "bwvisu-").entries
    result = diff(views, entries, tag="bwvisu", absent={}, absent_polls_to_finish=3)
    return time.perf_counter() - t0, sum(len(a.events) for a in result.appends)


async def squeue_calls_per_cycle(text: str, views: list[JobView]) -> int:
    runner = FakeCommandRunner().on(["squeue", "**"], text)
    watcher = Watcher(SlurmCli(runner), lambda: views, InMemoryEventStore(), tag="bwvisu",
                      interval=1.0, absent_polls_to_finish=3)
    await watcher.poll_once()
    return len(runner.calls_of("squeue"))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    text, views = synthetic(n)
    runs = [parse_and_diff(text, views) for _ in range(5)]
    best = min(seconds for seconds, _ in runs)
    events = runs[0][1]
    calls = asyncio.run(squeue_calls_per_cycle(text, views))
    print(f"squeue lines: {2 * n} ({n} ours), events decided per cycle: {events}")
    print(f"parse + diff: {best:.3f} s (best of 5); target < {TARGET_SECONDS} s; "
          f"ratio {best / TARGET_SECONDS:.2f}x of the target")
    print(f"squeue calls per poll cycle: {calls} (must be 1)")


if __name__ == "__main__":
    main()
