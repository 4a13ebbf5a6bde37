"""Two scheduler-adapters handling one extension request at once (a redelivery while the first still
runs) never raise Slurm's limit beyond the site's maximum."""

from __future__ import annotations

import asyncio

from bwvisu_common import events as ev
from scheduler_adapter.extensions import Extensions
from tests.fakes.event_store import InMemoryEventStore


class RacingSlurm:
    """Both replicas read the limit before either raised it; the second's read answers only after
    the first's scontrol, so it sees the raised limit."""

    def __init__(self) -> None:
        self.limit = 60
        self.reads = 0
        self.both_read = asyncio.Event()
        self.raised = asyncio.Event()

    async def time_limit(self, slurm_id: str) -> int:
        self.reads += 1
        if self.reads == 1:
            await self.both_read.wait()
        else:
            self.both_read.set()
            await self.raised.wait()
        return self.limit

    async def set_time_limit(self, slurm_id: str, minutes: int) -> None:
        self.limit = minutes
        self.raised.set()


async def test_two_replicas_on_one_request_extend_it_once() -> None:
    store = InMemoryEventStore()
    request = ev.JobExtensionRequested(job_id="j1", minutes=30)
    await store.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"),
                        ev.JobQueued(job_id="j1", slurm_id="4711"), ev.JobStarted(job_id="j1", nodes=["cn0"]),
                        request])
    slurm = RacingSlurm()
    replicas = [Extensions(store, slurm, 30), Extensions(store, slurm, 30)]  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(*(r.on_requested(request) for r in replicas)), 5)
    assert slurm.limit == 90, "60 minutes and 30 more, never 120"
    kinds = [type(e).__name__ for _, e in await store.read_job("j1")]
    assert kinds.count("JobTimeLimitRead") == 1 and kinds.count("JobExtended") == 1
