"""Logins that ended: kept in the shared state store, so every replica and a restart refuse them.

A request checks its login id here. Answers are cached for a few seconds (one store read per
login and interval, not per request); a logout on this replica counts at once, one on another
replica within the interval. If the store does not answer, a login confirmed before keeps its
last answer and one never confirmed is refused (the person logs in again, here).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from bwvisu_common.errors import BwvisuError
from web_portal.ports import RevokedLogins

log = logging.getLogger(__name__)


class Revocations:
    """Revokes login ids and tells whether one was revoked, through a RevokedLogins store."""

    def __init__(self, store: RevokedLogins | None = None, cache_for: float = 2.0,
                 max_cached: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store  # None: this process alone remembers (a portal without a shared store)
        self.cache_for = cache_for
        self.max_cached = max_cached
        self._clock = clock
        self._known: OrderedDict[str, tuple[bool, float]] = OrderedDict()  # id -> (revoked, checked at)

    def fresh(self, login_id: str) -> None:
        """A login just made here: nobody can have revoked it yet."""
        self._remember(login_id, False)

    async def revoke(self, login_id: str, ttl: float) -> None:
        """Revoke for `ttl` s (the cookie's remaining life); here at once even if the store fails."""
        self._remember(login_id, True)
        if self.store is None:
            return
        try:
            await self.store.revoke_login(login_id, max(1, int(ttl) + 1))
        except BwvisuError as exc:
            log.warning("logout could not be shared with the other portal replicas: %s", exc)

    async def revoked(self, login_id: str) -> bool:
        now = self._clock()
        known = self._known.get(login_id)
        if known is not None and (known[0] or now - known[1] < self.cache_for):
            return known[0]
        if self.store is None:
            return False
        try:
            answer = await self.store.login_revoked(login_id)
        except BwvisuError as exc:
            log.warning("cannot check logins against the state store: %s", exc)
            return True if known is None else known[0]
        self._remember(login_id, answer)
        return answer

    def _remember(self, login_id: str, revoked: bool) -> None:
        self._known[login_id] = (revoked, self._clock())
        self._known.move_to_end(login_id)
        while len(self._known) > self.max_cached:
            self._known.popitem(last=False)
