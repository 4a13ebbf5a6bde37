"""Activity: once per activity-interval, read the gateway's connection counters (one read for all
its forwards) and append SessionActivity for each job whose forwards carried traffic, when its
activity (at the interval's grain) changed. The decisions are domain/activity.py's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from bwvisu_common import events as ev
from gateway_agent.domain.activity import ActivityBook, by_job, rounded
from gateway_agent.errors import TrafficUnavailable
from gateway_agent.gateway import Gateway
from gateway_agent.ports import TrafficCounters

log = logging.getLogger(__name__)

APPENDS_AT_ONCE = 32


class Activity:
    """Reports the last traffic of the sessions this gateway forwards."""

    def __init__(self, gateway: Gateway, counters: TrafficCounters, interval: float = 60.0,
                 clock: Callable[[], datetime] = ev.utcnow) -> None:
        self._gw = gateway
        self._counters = counters
        self._interval = interval
        self._clock = clock
        self._book = ActivityBook(grain=interval)
        self._unavailable = False

    def _known(self, job_id: str) -> datetime | None:
        view = self._gw.jobs.get(job_id)
        return view.last_activity if view is not None else None

    async def look_once(self) -> list[ev.SessionActivity]:
        """One look at every forward's connections; the events appended (a failed append is tried
        again at the next look)."""
        gw = self._gw
        forwards = dict(gw.table.rules)
        try:
            connections = await self._counters.connections()
        except TrafficUnavailable as exc:
            if not self._unavailable:
                log.error("session activity unknown, so reported as activity now: %s", exc)
            self._unavailable = True
            # Unknown is not idle: a site's idle-timeout must not end sessions because this gateway
            # cannot count their traffic.
            at = rounded(self._clock(), self._interval)
            report = {job_id: at for job_id in forwards if self._known(job_id) != at}
        else:
            self._unavailable = False
            ports = {r.external_port: job_id for job_id, rules in forwards.items() for r in rules}
            seen = by_job(connections, gw.external_ip, ports, own={gw.own_ip, gw.external_ip})
            report = self._book.observe(seen, forwards.keys(), self._clock(), self._known)
        events = [ev.SessionActivity(job_id=job_id, gateway=gw.name, last_activity=at)
                  for job_id, at in sorted(report.items())]
        limit = asyncio.Semaphore(APPENDS_AT_ONCE)

        async def append(event: ev.SessionActivity) -> None:
            async with limit:
                await gw.events.append([event])
                self._book.confirm(event.job_id, event.last_activity)

        # A failed append stays pending in the book: the next look reports it again.
        results = await asyncio.gather(*(append(e) for e in events), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning("session activity of %d job(s) not reported yet: %s", len(failed), failed[0])
        return [e for e, r in zip(events, results, strict=True) if not isinstance(r, BaseException)]

    async def run_forever(self) -> None:
        while True:
            try:
                await self.look_once()
            except Exception:
                log.exception("reading session activity failed; going on")
            await asyncio.sleep(self._interval)
