"""The job read model as a service holds it, kept up to date from the event stream.

`LiveJobs` is etcd's snapshot plus every later event, folded in memory (read_model.evolve),
with a way to wait until a job reaches some state. The projector (projector.py) is the same
fold that also writes each batch back to etcd.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.events import AnyEvent
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.read_model import JobView, evolve

log = logging.getLogger(__name__)


class ProjectionMoved(Exception):
    """etcd's sequence is not the one this projector wrote last (another projector, a rebuild)."""


class LiveJobs:
    """Every job's view, from etcd's snapshot plus the stream's later events."""

    def __init__(self, events: EventStore, state: StateStore, max_batch: int = 500) -> None:
        self._events = events
        self._state = state
        self._max_batch = max_batch
        self._jobs: dict[str, JobView] = {}
        self._seq = 0
        self._changed = asyncio.Condition()

    @property
    def seq(self) -> int:
        return self._seq

    def get(self, job_id: str) -> JobView | None:
        return self._jobs.get(job_id)

    def all(self) -> list[JobView]:
        return list(self._jobs.values())

    async def wait_for(
        self, job_id: str, done: Callable[[JobView], bool], timeout: float
    ) -> JobView | None:
        """The job once `done(job)` holds; None if it does not within `timeout` seconds."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: (j := self._jobs.get(job_id)) is not None and done(j)),
                    timeout,
                )
            except TimeoutError:
                return None
        return self._jobs.get(job_id)

    async def changed(self, after_seq: int, timeout: float) -> int:
        """The sequence once any job changed after `after_seq` (or after `timeout` seconds)."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._seq > after_seq), timeout)
            except TimeoutError:
                pass
        return self._seq

    async def run(self, caught_up: asyncio.Event | None = None) -> None:
        """Follow the stream until cancelled; set `caught_up` once the backlog is applied."""
        while True:
            try:
                await self._follow(caught_up)
            except ProjectionMoved:
                log.info("etcd moved away from sequence %d; reloading", self._seq)
            except DependencyUnavailable as exc:
                log.warning("read model: %s; retrying in 1 s", exc)
                await asyncio.sleep(1)

    async def catch_up(self) -> int:
        """Load etcd's snapshot and apply every later stored event; return the sequence reached."""
        self._jobs, self._seq = await self._state.load_jobs()
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

    async def _follow(self, caught_up: asyncio.Event | None) -> None:
        await self.catch_up()
        if caught_up is not None:
            caught_up.set()
        async for batch in self._events.batches(self._seq, self._max_batch):
            await self._apply(batch)

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
        await self._commit(list(changed.values()), new_seq)
        async with self._changed:
            self._jobs.update(changed)
            self._seq = new_seq
            self._changed.notify_all()

    async def _commit(self, changed: list[JobView], new_seq: int) -> None:
        """Where a batch goes before it is visible; memory only here."""
