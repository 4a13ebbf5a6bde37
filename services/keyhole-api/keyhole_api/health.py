"""GatewayHealth: which gateway agents are alive, from their heartbeats."""

from __future__ import annotations

import time
from collections.abc import Callable

from bwvisu_common.heartbeats import HEARTBEAT_TIMEOUT


class GatewayHealth:
    """When each gateway agent last said it was alive; silent for `timeout` s means dead."""

    def __init__(self, timeout: float = HEARTBEAT_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout
        self._clock = clock
        self._seen: dict[str, float] = {}

    def beat(self, gateway: str) -> None:
        self._seen[gateway] = self._clock()

    def forget(self, gateway: str) -> None:
        """Count a gateway as dead until its next heartbeat (it failed to answer)."""
        self._seen.pop(gateway, None)

    def alive(self) -> list[str]:
        now = self._clock()
        return sorted(g for g, t in self._seen.items() if now - t <= self._timeout)
