"""ProcConntrack: the gateway's tracked connections, from /proc/net/nf_conntrack in one read.

Accounting (`net.netfilter.nf_conntrack_acct`) is turned on at the first read, so that each entry
counts its packets; without it only new connections show as traffic. The file belongs to the
network namespace the agent runs in, which is the gateway's.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from gateway_agent.domain.activity import Connection, parse_conntrack
from gateway_agent.errors import TrafficUnavailable

log = logging.getLogger(__name__)

CONNTRACK = "/proc/net/nf_conntrack"
ACCOUNTING = "/proc/sys/net/netfilter/nf_conntrack_acct"


class ProcConntrack:
    """TrafficCounters read from procfs (root; the kernel's nf_conntrack with its proc file)."""

    def __init__(self, path: str = CONNTRACK, accounting: str = ACCOUNTING) -> None:
        self._path = Path(path)
        self._accounting = Path(accounting)
        self._counting = False

    def _enable_accounting(self) -> None:
        """Without accounting a busy long-lived connection shows no traffic: unknown, not idle."""
        try:
            if self._accounting.read_text().strip() != "1":
                self._accounting.write_text("1\n")
                log.info("turned on conntrack accounting (%s): connections count their packets",
                         self._accounting)
        except OSError as exc:
            raise TrafficUnavailable(f"cannot turn on conntrack accounting ({self._accounting}): "
                                     f"{exc.strerror or exc}") from exc
        self._counting = True

    def _read(self) -> str:
        if not self._counting:
            self._enable_accounting()
        try:
            return self._path.read_text()
        except OSError as exc:
            raise TrafficUnavailable(f"cannot read {self._path}: {exc.strerror or exc}") from exc

    async def connections(self) -> list[Connection]:
        # A gateway with many connections: the read and the parse stay off the event loop.
        return await asyncio.to_thread(lambda: parse_conntrack(self._read()))
