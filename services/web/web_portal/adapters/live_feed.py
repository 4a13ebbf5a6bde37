"""The portal's job feed before the event stream is connected."""

from __future__ import annotations

import asyncio

from bwvisu_common.projections import JobView


class NoJobsYet:
    """The feed before the event stream is connected: no jobs, no changes."""

    seq = 0

    def get(self, job_id: str) -> JobView | None:
        return None

    def all(self) -> list[JobView]:
        return []

    async def changed(self, after_seq: int, timeout: float) -> int:
        await asyncio.sleep(timeout)
        return 0
