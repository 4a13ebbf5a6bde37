"""How many failed logins the portal takes: per source address and in total, in a sliding window.

Pure bookkeeping: the caller passes the time. An attempt is counted before its password is
checked (so a burst of parallel guesses cannot all slip past the limit while PAM is busy) and
refunded when it turns out right. A success resets nothing else: an attacker with an account of
their own must not clear their address's count by logging in between guesses.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Refused:
    """Too many failures: `scope` is "address" or "total"; try again after `retry_after` s."""

    scope: str
    retry_after: int


class LoginLimits:
    """At most `per_address` failures per address and `total` overall within `window` seconds.

    Memory stays bounded whatever the number of addresses: a failure is only recorded while the
    total is under its limit, so at most `total` addresses hold live entries (each at most
    `per_address` times); expired ones are dropped as new ones come, and `max_addresses` caps
    the table even so.
    """

    def __init__(self, per_address: int, total: int, window: float, max_addresses: int = 10_000) -> None:
        if per_address < 1 or total < 1 or window <= 0:
            raise ValueError("login limits must be positive")
        self.per_address = per_address
        self.total = total
        self.window = window
        self.max_addresses = max_addresses
        self._by_address: OrderedDict[str, deque[float]] = OrderedDict()  # least recent first
        self._all: deque[float] = deque()

    def begin(self, address: str, now: float) -> Refused | None:
        """Count an attempt from `address` as a failure unless over a limit (then Refused)."""
        self._expire(now)
        times = self._by_address.get(address)
        if times is not None:
            _drop_before(times, now - self.window)
        if times is not None and len(times) >= self.per_address:
            return Refused("address", self._wait(times[0], now))
        if len(self._all) >= self.total:
            return Refused("total", self._wait(self._all[0], now))
        if times is None:
            while len(self._by_address) >= self.max_addresses:
                self._by_address.popitem(last=False)
            times = self._by_address[address] = deque()
        times.append(now)
        self._by_address.move_to_end(address)
        self._all.append(now)
        return None

    def succeeded(self, address: str, started: float) -> None:
        """The attempt `begin` counted at `started` was right: take it back, and only it."""
        times = self._by_address.get(address)
        if times is not None and started in times:
            times.remove(started)
            if not times:
                del self._by_address[address]
        if started in self._all:
            self._all.remove(started)

    def failures(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    @property
    def total_failures(self) -> int:
        return len(self._all)

    @property
    def tracked_addresses(self) -> int:
        return len(self._by_address)

    def _wait(self, oldest: float, now: float) -> int:
        return max(1, math.ceil(oldest + self.window - now))

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        _drop_before(self._all, horizon)
        while self._by_address:
            address, times = next(iter(self._by_address.items()))
            _drop_before(times, horizon)
            if times:
                break
            del self._by_address[address]


def _drop_before(times: deque[float], horizon: float) -> None:
    while times and times[0] <= horizon:
        times.popleft()
