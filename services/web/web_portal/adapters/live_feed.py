"""LiveJobs, plus what the portal's live page needs: wait for any change, and start times."""

from __future__ import annotations

import asyncio
from datetime import datetime

from bwvisu_common import events as ev
from bwvisu_common.events import AnyEvent
from bwvisu_common.projections import JobView
from bwvisu_common.projector import LiveJobs


class LiveJobFeed(LiveJobs):
    """The shared read model, followed in the portal's process (no polling of runner-api)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._started: dict[str, datetime] = {}

    def started_at(self, job_id: str) -> datetime | None:
        return self._started.get(job_id)

    async def changed(self, after_seq: int, timeout: float) -> int:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._seq > after_seq), timeout)
            except TimeoutError:
                pass
        return self._seq

    async def _apply(self, batch: list[tuple[int, AnyEvent]]) -> None:
        # The read model keeps no start time; note it from the events seen (jobs that
        # started before this process did fall back to their submission time).
        for _, event in batch:
            if isinstance(event, ev.JobStarted):
                self._started.setdefault(event.job_id, event.time)
        await super()._apply(batch)


class NoJobsYet:
    """The feed before the event stream is connected: no jobs, no changes."""

    seq = 0

    def get(self, job_id: str) -> JobView | None:
        return None

    def all(self) -> list[JobView]:
        return []

    def started_at(self, job_id: str) -> datetime | None:
        return None

    async def changed(self, after_seq: int, timeout: float) -> int:
        await asyncio.sleep(timeout)
        return 0
