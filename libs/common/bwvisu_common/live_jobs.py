"""The job read model as a service holds it, kept up to date from the event stream.

`LiveJobs` is etcd's snapshot plus every later event, folded in memory (read_model.evolve),
with a way to wait until a job reaches some state. The projector (projector.py) is the same
fold that also writes each batch back to etcd.

A finished job is forgotten once `kept_for` has passed since its last event (read_model's
due_for_forgetting), when the snapshot is loaded and then every `kept_for / 10` (at most hourly),
so memory and etcd hold the recent jobs only, however long the service runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.events import AnyEvent, utcnow
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.read_model import JobView, due_for_forgetting, evolve, opens_job

DEFAULT_KEPT_FOR = timedelta(days=7)

log = logging.getLogger(__name__)


class ProjectionMoved(Exception):
    """etcd's sequence is not the one this projector wrote last (another projector, a rebuild)."""


class LiveJobs:
    """Every job's view, from etcd's snapshot plus the stream's later events."""

    def __init__(self, events: EventStore, state: StateStore, max_batch: int = 500, *,
                 kept_for: timedelta = DEFAULT_KEPT_FOR, clock: Callable[[], datetime] = utcnow) -> None:
        self._events = events
        self._state = state
        self._max_batch = max_batch
        self._kept_for = kept_for
        self._clock = clock
        self._jobs: dict[str, JobView] = {}
        # uid -> that user's job ids: a user's sessions without looking at everyone's jobs.
        self._by_user: dict[str, set[str]] = {}
        self._seq = 0
        self._caught_up = False  # etcd's snapshot was loaded and the stream applied after it
        self._changed = asyncio.Condition()
        self._writing = asyncio.Lock()  # a batch and a forgetting never interleave

    @property
    def seq(self) -> int:
        return self._seq

    async def stream_last_seq(self) -> int:
        """The newest sequence in the stream now: what `seq` lags behind (metrics)."""
        return await self._events.last_seq()

    def get(self, job_id: str) -> JobView | None:
        return self._jobs.get(job_id)

    def all(self) -> list[JobView]:
        return list(self._jobs.values())

    def of_user(self, uid: str) -> list[JobView]:
        """The jobs of one user (in no particular order)."""
        return [self._jobs[job_id] for job_id in self._by_user.get(uid, ())]

    def _put(self, jobs: dict[str, JobView]) -> None:
        for job_id, job in jobs.items():
            old = self._jobs.get(job_id)
            if old is not None and old.uid != job.uid:
                self._unindex(old)
            self._by_user.setdefault(job.uid, set()).add(job_id)
        self._jobs.update(jobs)

    def _unindex(self, job: JobView) -> None:
        mine = self._by_user.get(job.uid)
        if mine is not None:
            mine.discard(job.job_id)
            if not mine:
                del self._by_user[job.uid]

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

    async def forget_finished(self) -> list[str]:
        """Forget the jobs finished longer than `kept_for` ago; the ids forgotten."""
        async with self._writing:
            due = due_for_forgetting(self._jobs.values(), self._clock(), self._kept_for)
            if due:
                await self._commit_forgetting(due)
                for job_id in due:
                    self._unindex(self._jobs.pop(job_id))
        if due:
            log.info("forgot %d jobs finished more than %s ago", len(due), self._kept_for)
        return due

    async def run(self, caught_up: asyncio.Event | None = None) -> None:
        """Follow the stream until cancelled; set `caught_up` once the backlog is applied."""
        sweeper = asyncio.create_task(self._sweep())
        try:
            await self._follow_forever(caught_up)
        finally:
            sweeper.cancel()

    async def _sweep(self) -> None:
        every = min(max(self._kept_for.total_seconds() / 10, 1.0), 3600.0)
        while True:
            await asyncio.sleep(every)
            try:
                await self.forget_finished()
            except (ProjectionMoved, DependencyUnavailable) as exc:
                log.info("forgetting finished jobs: %r; trying again later", exc)

    async def _follow_forever(self, caught_up: asyncio.Event | None) -> None:
        reload = True
        while True:
            try:
                await self._follow(caught_up, reload)
            except ProjectionMoved:
                log.info("etcd moved away from sequence %d; reloading", self._seq)
                reload = True
            except DependencyUnavailable as exc:
                # Once caught up, go on from what this process holds: etcd's snapshot may be older,
                # and loading it again would show jobs as they were a moment ago.
                reload = not self._caught_up
                log.warning("read model: %s; retrying in 1 s", exc)
                await asyncio.sleep(1)

    async def catch_up(self) -> int:
        """Load etcd's snapshot and apply every later stored event; return the sequence reached.

        Jobs the snapshot still holds but that are due are forgotten before anyone reads them.
        """
        loaded, self._seq = await self._state.load_jobs()
        self._jobs, self._by_user = {}, {}
        self._put(loaded)
        target = await self._events.last_seq()
        if self._seq < target:
            batches = self._events.batches(self._seq, self._max_batch)
            try:
                async for batch in batches:
                    await self._apply(batch)
                    if self._seq >= target:
                        break
            finally:
                await batches.aclose()  # type: ignore[attr-defined]
        await self.forget_finished()
        return self._seq

    async def _follow(self, caught_up: asyncio.Event | None, reload: bool = True) -> None:
        if reload:
            await self.catch_up()
            self._caught_up = True
        if caught_up is not None:
            caught_up.set()
        async for batch in self._events.batches(self._seq, self._max_batch):
            await self._apply(batch)

    async def _apply(self, batch: list[tuple[int, AnyEvent]]) -> None:
        async with self._writing:
            fresh = [(seq, e) for seq, e in batch if seq > self._seq]
            if not fresh:
                return
            changed: dict[str, JobView] = {}
            for seq, event in fresh:
                job_id = event.job_id
                job = changed.get(job_id) or self._jobs.get(job_id)
                if job is None and not opens_job(event):
                    continue  # a forgotten job's late word: it stays forgotten
                if job is not None and seq <= job.seq:
                    continue  # already in this view (a chunked write that a crash cut short)
                changed[job_id] = evolve(job, event, seq)
            new_seq = fresh[-1][0]
            await self._commit(list(changed.values()), new_seq)
            async with self._changed:
                self._put(changed)
                self._seq = new_seq
                self._changed.notify_all()

    async def _commit(self, changed: list[JobView], new_seq: int) -> None:
        """Where a batch goes before it is visible; memory only here."""

    async def _commit_forgetting(self, job_ids: list[str]) -> None:
        """Where forgotten jobs go before they leave memory; nowhere here."""
