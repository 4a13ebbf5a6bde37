"""Keeps the etcd read model equal to the fold of the event stream.

Each batch of events is folded in memory and written with the new stream sequence in
one guarded transaction, so several projectors (HA) never apply an event twice, and a
restarted one resumes at the sequence etcd holds.
"""

from __future__ import annotations

import asyncio
import logging

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.events import AnyEvent
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.projections import JobView, evolve

log = logging.getLogger(__name__)


class _ProjectionMoved(Exception):
    """etcd's sequence is not the one this projector wrote last (another projector, a rebuild)."""


class Projector:
    """Folds the event stream into the state store."""

    def __init__(self, events: EventStore, state: StateStore, max_batch: int = 500) -> None:
        self._events = events
        self._state = state
        self._max_batch = max_batch
        self._jobs: dict[str, JobView] = {}
        self._seq = 0

    @property
    def seq(self) -> int:
        return self._seq

    async def run(self, stop: asyncio.Event | None = None, caught_up: asyncio.Event | None = None) -> None:
        """Follow the stream until `stop`; set `caught_up` once the backlog is applied."""
        while stop is None or not stop.is_set():
            try:
                await self._follow(caught_up)
            except _ProjectionMoved:
                log.info("projector: etcd moved away from sequence %d; reloading", self._seq)
            except DependencyUnavailable as exc:
                log.warning("projector: %s; retrying in 1 s", exc)
                await asyncio.sleep(1)

    async def catch_up(self) -> int:
        """Apply every stored event not yet projected; return the sequence reached."""
        await self._load()
        target = await self._events.last_seq()
        if self._seq >= target:
            return self._seq
        batches = self._events.batches(self._seq, self._max_batch)
        try:
            async for batch in batches:
                await self._apply(batch)
                if self._seq >= target:
                    break
        finally:
            await batches.aclose()  # type: ignore[attr-defined]
        return self._seq

    async def rebuild(self) -> int:
        """Wipe the projection and replay the whole stream."""
        await self._state.wipe_projection()
        return await self.catch_up()

    async def _follow(self, caught_up: asyncio.Event | None) -> None:
        await self.catch_up()
        if caught_up is not None:
            caught_up.set()
        async for batch in self._events.batches(self._seq, self._max_batch):
            await self._apply(batch)

    async def _load(self) -> None:
        self._jobs, self._seq = await self._state.load_jobs()

    async def _apply(self, batch: list[tuple[int, AnyEvent]]) -> None:
        fresh = [(seq, e) for seq, e in batch if seq > self._seq]
        if not fresh:
            return
        changed: dict[str, JobView] = {}
        for seq, event in fresh:
            job_id = event.job_id
            job = changed.get(job_id) or self._jobs.get(job_id)
            if job is not None and seq <= job.seq:
                continue  # already in this view (a chunked write that a crash cut short)
            changed[job_id] = evolve(job, event, seq)
        new_seq = fresh[-1][0]
        if not await self._state.save_jobs(list(changed.values()), new_seq, self._seq):
            raise _ProjectionMoved()
        self._jobs.update(changed)
        self._seq = new_seq
