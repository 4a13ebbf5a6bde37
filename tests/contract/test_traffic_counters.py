"""One set of expectations for the gateway's TrafficCounters: FakeTrafficCounters and ProcConntrack
(on a file written as the kernel writes /proc/net/nf_conntrack)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_agent.adapters.conntrack import ProcConntrack
from gateway_agent.domain.activity import UNCOUNTED, Connection
from gateway_agent.errors import TrafficUnavailable
from tests.fakes.traffic import FakeTrafficCounters

# Two connections to a forward (one with accounting, one from before it was on), a UDP flow, and a
# connection of the gateway's own.
PROC = "".join(line + "\n" for line in (
    "ipv4     2 tcp      6 431995 ESTABLISHED src=192.0.2.7 dst=10.200.0.20 sport=40001 dport=20001 "
    "packets=12 bytes=900 src=10.200.0.3 dst=10.200.0.20 sport=7000 dport=40001 packets=10 bytes=800 "
    "[ASSURED] mark=0 zone=0 use=2",
    "ipv4     2 tcp      6 117 TIME_WAIT src=192.0.2.8 dst=10.200.0.20 sport=40002 dport=20001 "
    "src=10.200.0.3 dst=10.200.0.20 sport=7000 dport=40002 [ASSURED] mark=0 zone=0 use=2",
    "ipv4     2 udp      17 29 src=10.200.0.20 dst=10.200.0.1 sport=5353 dport=53 "
    "src=10.200.0.1 dst=10.200.0.20 sport=53 dport=5353 mark=0 zone=0 use=2",
))
EXPECTED = [Connection("192.0.2.7", 40001, "10.200.0.20", 20001, 22),
            Connection("192.0.2.8", 40002, "10.200.0.20", 20001, UNCOUNTED)]


class TrafficCountersContract:
    """What the activity loop relies on from `connections()`."""

    def counters(self, tmp_path: Path, text: str | None) -> FakeTrafficCounters | ProcConntrack:
        raise NotImplementedError  # pragma: no cover - overridden

    async def test_tcp_connections_with_their_packets_both_ways(self, tmp_path: Path) -> None:
        assert sorted(await self.counters(tmp_path, PROC).connections(), key=str) == EXPECTED

    async def test_none_tracked_is_an_empty_list(self, tmp_path: Path) -> None:
        assert await self.counters(tmp_path, "").connections() == []

    async def test_unreadable_counters_are_an_error_not_silence(self, tmp_path: Path) -> None:
        with pytest.raises(TrafficUnavailable):
            await self.counters(tmp_path, None).connections()


class TestFakeTrafficCounters(TrafficCountersContract):
    def counters(self, tmp_path: Path, text: str | None) -> FakeTrafficCounters:
        fake = FakeTrafficCounters(EXPECTED if text == PROC else [])
        fake.unavailable = text is None
        return fake


class TestProcConntrack(TrafficCountersContract):
    def counters(self, tmp_path: Path, text: str | None) -> ProcConntrack:
        proc = tmp_path / "nf_conntrack"
        if text is not None:
            proc.write_text(text)
        (tmp_path / "acct").write_text("0\n")
        return ProcConntrack(str(proc), str(tmp_path / "acct"))

    async def test_accounting_is_turned_on_at_the_first_read(self, tmp_path: Path) -> None:
        counters = self.counters(tmp_path, PROC)
        await counters.connections()
        assert (tmp_path / "acct").read_text().strip() == "1"

    async def test_accounting_that_cannot_be_turned_on_leaves_traffic_unknown(self, tmp_path: Path) -> None:
        # Without it a busy long-lived connection would look idle: unknown, so counted as active.
        proc = tmp_path / "nf_conntrack"
        proc.write_text(PROC)
        counters = ProcConntrack(str(proc), str(tmp_path / "missing" / "acct"))
        with pytest.raises(TrafficUnavailable, match="accounting"):
            await counters.connections()
