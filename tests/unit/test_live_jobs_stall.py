"""A follower that stalled goes on from what it holds, without loading etcd's snapshot again."""

from __future__ import annotations

import asyncio

from bwvisu_common import events as ev
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.live_jobs import LiveJobs
from tests.conditions import eventually
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.state_store import InMemoryStateStore


class StallsOnce(InMemoryEventStore):
    """Following stops once, with the batch holding job "b" not delivered."""

    stalled = False

    async def batches(self, after_seq, max_batch=500):  # type: ignore[no-untyped-def,override]
        async for batch in super().batches(after_seq, max_batch):
            if not self.stalled and any(e.job_id == "b" for _, e in batch):
                self.stalled = True
                raise DependencyUnavailable("following stream stalled")
            yield batch


class CountsLoads(InMemoryStateStore):
    loads = 0

    async def load_jobs(self):  # type: ignore[no-untyped-def]
        self.loads += 1
        return await super().load_jobs()


async def test_a_stalled_follower_resumes_from_its_own_sequence() -> None:
    events, state = StallsOnce(), CountsLoads()
    await events.append([ev.JobSubmitted(job_id="a", uid="alice", template_name="t")])
    jobs = LiveJobs(events, state)
    task = asyncio.create_task(jobs.run())
    try:
        await eventually(lambda: jobs.get("a") is not None, "job a is followed")
        await events.append([ev.JobSubmitted(job_id="b", uid="bob", template_name="t")])
        await eventually(lambda: jobs.get("b") is not None, "job b arrives after the stall", timeout=5)
        assert events.stalled
        assert state.loads == 1, "etcd's (older) snapshot was not loaded again"
        assert jobs.get("a") is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
