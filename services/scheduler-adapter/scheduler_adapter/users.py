"""UserGate: asks the command node who a user is and applies the site's rule, caching yeses briefly."""

from __future__ import annotations

import time
from collections.abc import Callable

from scheduler_adapter.domain.users import UserPolicy, user_refusal
from scheduler_adapter.ports import Scheduler

# A user allowed a moment ago is still allowed: keeps `id` off most submits. Refusals are not
# cached, so a user just added to the group is let in at once.
ALLOWED_SECONDS = 60.0


class UserGate:
    """Whether a user may run jobs: exists on the cluster and passes the site's UserPolicy."""

    def __init__(self, scheduler: Scheduler, policy: UserPolicy, *,
                 clock: Callable[[], float] = time.monotonic, ttl: float = ALLOWED_SECONDS) -> None:
        self._scheduler = scheduler
        self._policy = policy
        self._clock = clock
        self._ttl = ttl
        self._allowed: dict[str, float] = {}

    async def refusal(self, uid: str) -> str | None:
        """Why `uid` may not run jobs ("no such user ..." included), or None; SchedulerUnavailable."""
        now = self._clock()
        if now - self._allowed.get(uid, -self._ttl) < self._ttl:
            return None
        reason = user_refusal(uid, await self._scheduler.identify(uid), self._policy)
        if reason is None:
            self._allowed[uid] = now
        return reason
