"""FakeTrafficCounters: the gateway agent's TrafficCounters for unit tests;
tests/contract/test_traffic_counters.py holds it to ProcConntrack."""

from __future__ import annotations

from gateway_agent.domain.activity import Connection
from gateway_agent.errors import TrafficUnavailable


class FakeTrafficCounters:
    """Answers with `now` (set by the test); `unavailable` makes every read fail."""

    def __init__(self, connections: list[Connection] | None = None) -> None:
        self.now: list[Connection] = list(connections or [])
        self.unavailable = False
        self.reads = 0

    async def connections(self) -> list[Connection]:
        self.reads += 1
        if self.unavailable:
            raise TrafficUnavailable("no conntrack here")
        return list(self.now)
