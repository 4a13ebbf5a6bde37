"""Elections among replicas: one holder of a role at a time, through a lease that dies with its holder.

A `Term` is one replica's hold of a role. It is fenced by time: the holder counts its lease as alive
only until `ttl` after it last *sent* a refresh that the store acknowledged, so its own clock says
"no longer mine" no later than the store can let another replica take the role. What is done as
the holder checks the term first (`term.check()`), and work that runs for a whole term (`lead`) is
cancelled the moment the term is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bwvisu_common.errors import BwvisuError, DependencyUnavailable

if TYPE_CHECKING:
    from bwvisu_common.ports import Election

log = logging.getLogger(__name__)

# How long a resign may take on the way out before the lease's expiry is left to free the role.
RESIGN_TIMEOUT = 2.0


class LeadershipLost(BwvisuError):
    """This replica no longer holds the role: what it was about to do as its holder is not done."""


class LeaseClock:
    """This replica's view of its lease: alive until a deadline each refresh pushes out, or lost for good."""

    def __init__(self, ttl: float, granted_at: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._deadline = granted_at + ttl
        self.why = ""
        self._terms: list[Term] = []

    def renewed(self, sent_at: float) -> None:
        """A refresh sent at `sent_at` was acknowledged: the store keeps the lease at least `ttl` after."""
        if not self.why:
            self._deadline = max(self._deadline, sent_at + self.ttl)

    def lose(self, why: str) -> None:
        """The lease is gone (expired, revoked, its connection dead): every term on it ends now."""
        if not self.why:
            self.why = why
        self._deadline = float("-inf")
        for term in self._terms:
            term.end(self.why)

    def alive(self) -> bool:
        return not self.why and self._clock() < self._deadline

    def remaining(self) -> float:
        """Seconds until the lease may have expired (0 when lost)."""
        return max(self._deadline - self._clock(), 0.0) if not self.why else 0.0

    def attach(self, term: Term) -> None:
        self._terms = [t for t in self._terms if t.held()] + [term]


class Term:
    """One hold of `role` by `holder`; `fence` orders terms (a later term has a larger one)."""

    def __init__(self, role: str, holder: str, lease: LeaseClock, fence: int = 0) -> None:
        self.role = role
        self.holder = holder
        self.fence = fence
        self._lease = lease
        self._ended = asyncio.Event()
        self._why = ""
        lease.attach(self)

    def held(self) -> bool:
        """Still the holder: not ended, and the lease surely alive by this replica's clock."""
        return not self._ended.is_set() and self._lease.alive()

    def why(self) -> str:
        """Why the term is over ("" while held)."""
        if self.held():
            return ""
        return self._why or self._lease.why or "the lease was not refreshed in time"

    def check(self) -> None:
        """Raise LeadershipLost unless still held: the fence before each act of the holder."""
        if not self.held():
            raise LeadershipLost(f"{self.role}: no longer held by {self.holder}: {self.why()}")

    def end(self, why: str) -> None:
        if not self._ended.is_set():
            self._why = why
            self._ended.set()

    async def wait_lost(self) -> None:
        """Return once the term is over, whether ended or run out by the clock."""
        while self.held():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), self._lease.remaining() + 0.01)


async def lead(election: Election, role: str, work: Callable[[Term], Awaitable[Any]], stop: asyncio.Event,
               *, retry: float = 1.0) -> None:
    """Until `stop`: campaign for `role`; while it is held run `work(term)`, cancelled the moment the
    term is lost. When `work` returns the role is given up and the campaign starts again."""
    while not stop.is_set():
        term = await _campaign(election, role, stop, retry)
        if term is None:
            return
        log.info("%s: held by this replica (%s)", role, term.holder)
        try:
            await _while_held(term, work(term), stop)
        finally:
            with contextlib.suppress(DependencyUnavailable, TimeoutError):
                await asyncio.wait_for(election.resign(term), RESIGN_TIMEOUT)
        if not stop.is_set():
            log.warning("%s: no longer held by this replica: %s", role, term.why() or "given up")


async def _campaign(election: Election, role: str, stop: asyncio.Event, retry: float) -> Term | None:
    """The term once won; None if `stop` came first. An unreachable store is retried every `retry` s."""
    failing = False
    while not stop.is_set():
        campaign = asyncio.ensure_future(election.campaign(role))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([campaign, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not campaign.done():
                campaign.cancel()
                await asyncio.gather(campaign, return_exceptions=True)
        if campaign.cancelled():
            return None
        try:
            return campaign.result()
        except DependencyUnavailable as exc:
            if not failing:
                log.warning("%s: cannot campaign: %s; trying again every %.0f s", role, exc, retry)
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry)
    return None


async def _while_held(term: Term, work: Awaitable[Any], stop: asyncio.Event) -> None:
    working = asyncio.ensure_future(work)
    watching = [asyncio.ensure_future(term.wait_lost()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait([working, *watching], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (working, *watching):
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await working  # its error, if it raised one, is the caller's
