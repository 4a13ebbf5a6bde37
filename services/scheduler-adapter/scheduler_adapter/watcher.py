"""The job watcher: one squeue per interval, diffed against the projection, turned into events.

However many scheduler-adapters run, one watches: the holder of the watcher role (service.py
campaigns for it). Its term fences what it does: no poll, append or scancel once the term is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable, Sequence

from prometheus_client import Gauge, Histogram

from bwvisu_common.election import LeadershipLost, Term
from bwvisu_common.errors import ConcurrencyConflict, DependencyUnavailable
from bwvisu_common.metrics import timed
from bwvisu_common.ports import Election, EventStore
from bwvisu_common.read_model import JobView
from bwvisu_common.state_keys import submission_role
from scheduler_adapter.domain.slurm import SqueueAnswer
from scheduler_adapter.domain.watch import Append, Claim, adopt, diff, diff_error, settle
from scheduler_adapter.errors import SchedulerError, SchedulerUnavailable
from scheduler_adapter.ports import Scheduler

log = logging.getLogger(__name__)

APPEND_CONCURRENCY = 32

SQUEUE_CYCLE_SECONDS = Histogram(
    "bwvisu_squeue_cycle_duration_seconds", "One watcher cycle: squeue, parse, diff and the events appended",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
SQUEUE_LINES = Gauge("bwvisu_squeue_lines", "Lines the last squeue printed (job records and skipped lines)")


class Watcher:
    """Keeps the event log in step with what Slurm says about bwvisu's jobs."""

    def __init__(self, scheduler: Scheduler, views: Callable[[], Iterable[JobView]], events: EventStore, *,
                 tag: str, interval: float, absent_polls_to_finish: int,
                 in_flight: Collection[str] = (), claims: Election | None = None) -> None:
        self._scheduler = scheduler
        # Where every replica claims the jobs it submits: their in_flight, seen from here.
        self._claims = claims
        self._views = views
        self._events = events
        self._tag = tag
        self._interval = interval
        self._threshold = absent_polls_to_finish
        self._in_flight = in_flight
        self._absent: dict[str, int] = {}
        self._error: str | None = None
        self._cancelled: set[str] = set()
        self._noise = (0, 0)
        self._term: Term | None = None

    async def run(self, stop: asyncio.Event, term: Term | None = None) -> None:
        """Poll until `stop` is set or `term` (the watcher role, if given) is over; a failing cycle is
        logged and the next one tries again."""
        if term is not self._term:
            # Counts from an earlier term are stale: another replica watched in between.
            self._term, self._absent = term, {}
        while not stop.is_set() and (term is None or term.held()):
            try:
                await self.poll_once()
            except LeadershipLost as exc:
                log.warning("watcher: %s; not acting on this poll", exc)
                return
            except DependencyUnavailable as exc:
                log.warning("watcher: %s", exc)
            except Exception:
                log.exception("watcher cycle failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)

    def _fence(self) -> None:
        if self._term is not None:
            self._term.check()

    @timed(SQUEUE_CYCLE_SECONDS)
    async def poll_once(self) -> int:
        """One cycle; returns how many jobs got new events."""
        self._fence()
        views = list(self._views())
        try:
            answer = await self._scheduler.poll()
        except SchedulerUnavailable as exc:
            if self._error is None:
                log.warning("cannot poll Slurm: %s; job states stay as they are", exc)
            self._error = str(exc)
            return await self._apply(diff_error(views, str(exc)))
        if self._error is not None:
            log.info("polling Slurm works again")
            self._error = None
        self._report(answer)
        SQUEUE_LINES.set(answer.records + answer.skipped)
        result = diff(views, answer.entries, tag=self._tag, absent=self._absent,
                      absent_polls_to_finish=self._threshold, in_flight=self._in_flight,
                      ambiguous=answer.ambiguous, cancelled=self._cancelled)
        self._absent = result.absent
        appends = result.appends + await self._settle(result.unsure)
        appends += [adopt(claim) for claim in result.adoptions
                    if not await self._submitted_elsewhere(claim.job_id) and await self._confirmed(claim)]
        applied = await self._apply(appends)
        await self._cancel_strays(result.strays)
        return applied

    def _report(self, answer: SqueueAnswer) -> None:
        # Another user's job name can hold a newline; say so once per change, not every poll.
        noise = (answer.skipped, len(answer.ambiguous))
        if noise != self._noise and any(noise):
            log.warning("squeue: %d line(s) that are no job record skipped (first: %s); "
                        "%d Slurm id(s) printed more than once set aside",
                        answer.skipped, answer.sample or "-", len(answer.ambiguous))
        self._noise = noise

    async def _settle(self, unsure: list[JobView]) -> list[Append]:
        """Ask Slurm once more, without job names, about jobs whose squeue line was repeated."""
        if not unsure:
            return []
        try:
            entries = await self._scheduler.examine([v.slurm_id for v in unsure])
        except SchedulerUnavailable as exc:
            log.warning("cannot re-check %d job(s) with forged squeue lines: %s", len(unsure), exc)
            return []
        return settle(unsure, entries)

    async def _submitted_elsewhere(self, job_id: str) -> bool:
        """Another replica submits the job right now: its JobQueued is coming, nothing to adopt."""
        if self._claims is None:
            return False
        try:
            return await self._claims.holder(submission_role(job_id)) is not None
        except DependencyUnavailable as exc:
            log.warning("cannot tell whether job %s is being submitted: %s; not adopting it now", job_id, exc)
            return True

    async def _confirmed(self, claim: Claim) -> bool:
        """Slurm itself says this Slurm job has the claimed name and user (squeue filters, no parsing)."""
        try:
            ok = await self._scheduler.confirm(claim.entry.slurm_id, claim.uid, claim.job_id)
        except SchedulerUnavailable as exc:
            log.warning("cannot confirm Slurm job %s for job %s: %s", claim.entry.slurm_id, claim.job_id, exc)
            return False
        if not ok:
            log.warning("squeue listed Slurm job %s as job %s of %s, but Slurm does not confirm it",
                        claim.entry.slurm_id, claim.job_id, claim.uid)
        return ok

    async def _apply(self, appends: Sequence[Append]) -> int:
        limit = asyncio.Semaphore(APPEND_CONCURRENCY)

        async def one(a: Append) -> int:
            async with limit:
                self._fence()
                try:
                    await self._events.append(a.events, expected_version=a.expected_seq)
                except ConcurrencyConflict:
                    # Something happened to the job meanwhile; the next poll decides again.
                    log.debug("job %s moved on; not applying %s", a.job_id, a.events)
                    return 0
            names = ", ".join(type(e).__name__ for e in a.events)
            log.info("job %s: %s", a.job_id, names)
            return 1

        return sum(await asyncio.gather(*(one(a) for a in appends)))

    async def _cancel_strays(self, strays: list[Claim]) -> None:
        for claim in strays:
            entry = claim.entry
            if not await self._confirmed(claim):
                continue
            self._fence()
            log.warning("Slurm job %s carries the tag of bwvisu job %s, which is over or is another "
                        "Slurm job; cancelling it", entry.slurm_id, claim.job_id)
            try:
                await self._scheduler.cancel(claim.uid, entry.slurm_id)
                self._cancelled.add(entry.slurm_id)
            except SchedulerError as exc:
                log.warning("cannot cancel stray Slurm job %s: %s", entry.slurm_id, exc)
