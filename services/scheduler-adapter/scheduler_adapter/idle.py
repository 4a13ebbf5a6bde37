"""The idle culler: cancels sessions that carried no traffic for the site's `idle-timeout`.

One scheduler-adapter does it, the holder of the idle role (service.py campaigns for it); each
cancel is appended on the condition that the job's last event is the one it was decided on, so a
second culler (a term that just ended) or new traffic meanwhile makes it a harmless conflict. The
cancel itself goes the usual way: JobCancelRequested -> the handlers' scancel. Decisions: bwvisu_common.idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from bwvisu_common.election import LeadershipLost, Term
from bwvisu_common.errors import ConcurrencyConflict, DependencyUnavailable
from bwvisu_common.events import utcnow
from bwvisu_common.idle import IdlePolicy, decide_idle_cancel
from bwvisu_common.ports import EventStore
from bwvisu_common.read_model import JobView

log = logging.getLogger(__name__)


def gateways_of(view: JobView) -> set[str]:
    """The gateways that forward (or are taking over) the job's sessions; each must count."""
    return {s.gateway for s in view.services} | ({view.gateway} if view.gateway else set())


def look_interval(activity_interval: float) -> float:
    """How often the culler looks: about as often as activity can change, at least every 15 s."""
    return max(0.5, min(activity_interval, 15.0))


class IdleCuller:
    """Cancels, with the reason "idle", the sessions the policy says have been idle too long."""

    def __init__(self, views: Callable[[], Iterable[JobView]], events: EventStore, policy: IdlePolicy,
                 interval: float, clock: Callable[[], datetime] = utcnow,
                 counting: Callable[[], Iterable[str]] | None = None) -> None:
        self._views = views
        self._events = events
        self._policy = policy
        self._interval = interval
        self._clock = clock
        # The gateways whose agents beat, so count their traffic. A silent agent's sessions may be
        # in use all the same (its rules still forward): no report from it is no evidence of idleness.
        self._counting = counting

    async def cull_once(self, term: Term | None = None) -> list[str]:
        """One look at every job; the jobs whose cancel was appended."""
        now, cancelled = self._clock(), []
        counting = None if self._counting is None else set(self._counting())
        for view in list(self._views()):
            if counting is not None and not gateways_of(view) <= counting:
                continue
            decided = decide_idle_cancel(view, self._policy, now)
            if not decided:
                continue
            if term is not None:
                term.check()
            try:
                await self._events.append(decided, expected_version=view.seq)
            except ConcurrencyConflict:
                continue  # the job moved on meanwhile (traffic, its end): the next look decides again
            log.info("job %s: cancelled, idle for %g min", view.job_id, self._policy.timeout_minutes,
                     extra={"job_id": view.job_id})
            cancelled.append(view.job_id)
        return cancelled

    async def run(self, stop: asyncio.Event, term: Term | None = None) -> None:
        """Look every interval until `stop` or the end of `term`; a failing look is logged."""
        while not stop.is_set() and (term is None or term.held()):
            try:
                await self.cull_once(term)
            except LeadershipLost as exc:
                log.warning("idle culler: %s", exc)
                return
            except DependencyUnavailable as exc:
                log.warning("idle culler: %s", exc)
            except Exception:
                log.exception("idle culler's look failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
