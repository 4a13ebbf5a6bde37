"""A session's last activity from its forwards' connection counters: the pure decisions
(domain/activity.py) and the agent's look at them (activity.py) on in-memory stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bwvisu_common import events as ev
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.live_jobs import LiveJobs
from gateway_agent.activity import Activity
from gateway_agent.domain.activity import (
    ActivityBook,
    Connection,
    by_job,
    carried_traffic,
    parse_conntrack,
    rounded,
)
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.gateway import Gateway
from tests.conditions import eventually
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.firewall import InMemoryFirewall
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore
from tests.fakes.traffic import FakeTrafficCounters

GW = "10.0.0.30"
T0 = datetime(2026, 11, 29, 9, 0, 5, tzinfo=UTC)


def nothing_known(_: str) -> datetime | None:
    return None


def conn(sport: int, packets: int, port: int = 20001, src: str = "192.0.2.7") -> Connection:
    return Connection(src, sport, GW, port, packets)


# --- domain ----------------------------------------------------------------------------------


def test_connections_are_counted_per_job_by_the_forwarded_external_port() -> None:
    seen = by_job([conn(1, 5), conn(2, 7, port=20002), conn(3, 1, port=20999),
                   Connection("192.0.2.7", 4, "10.9.9.9", 20001, 3),  # to another address of the gateway
                   Connection(GW, 5, GW, 20001, 3)],  # the gateway's own (a probe)
                  GW, {20001: "j1", 20002: "j2"}, own={GW})
    assert seen == {"j1": {("192.0.2.7", 1, 20001): 5}, "j2": {("192.0.2.7", 2, 20002): 7}}


@pytest.mark.parametrize(("before", "after", "traffic"), [
    ({("a", 1, 1): 5}, {("a", 1, 1): 9}, True),  # counters grew
    ({("a", 1, 1): 5}, {("a", 1, 1): 5}, False),  # stayed
    ({("a", 1, 1): 5}, {("a", 1, 1): 2}, True),  # reset: the same tuple, a new connection
    ({}, {("a", 1, 1): 0}, True),  # a new connection (even uncounted)
    ({("a", 1, 1): 5}, {}, False),  # a connection gone carried nothing new
    ({}, {}, False),
])
def test_what_counts_as_traffic(before: dict, after: dict, traffic: bool) -> None:
    assert carried_traffic(before, after) is traffic


def test_activity_is_rounded_down_to_the_grain() -> None:
    assert rounded(T0, 60) == datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    assert rounded(T0, 2) == datetime(2026, 11, 29, 9, 0, 4, tzinfo=UTC)


def test_a_first_look_is_only_a_baseline() -> None:
    book = ActivityBook()
    assert book.observe({"j1": {("a", 1, 1): 5}}, ["j1"], T0, nothing_known) == {}
    assert book.observe({"j1": {("a", 1, 1): 5}}, ["j1"], T0 + timedelta(minutes=1), nothing_known) == {}


def test_growing_counters_are_reported_once_per_grain_until_confirmed() -> None:
    book = ActivityBook(grain=60)
    book.observe({"j1": {("a", 1, 1): 5}}, ["j1"], T0, nothing_known)
    minute = rounded(T0 + timedelta(minutes=1), 60)
    assert book.observe({"j1": {("a", 1, 1): 9}}, ["j1"], T0 + timedelta(minutes=1), nothing_known) \
        == {"j1": minute}
    # Not appended yet (the log was away): reported again at the next look, traffic or not.
    assert book.observe({"j1": {("a", 1, 1): 9}}, ["j1"], T0 + timedelta(minutes=1, seconds=10),
                        nothing_known) == {"j1": minute}
    book.confirm("j1", minute)
    # More traffic within the same minute: nothing new to say.
    assert book.observe({"j1": {("a", 1, 1): 12}}, ["j1"], T0 + timedelta(minutes=1, seconds=20),
                        nothing_known) == {}
    # Counters that stay say nothing, a minute later either.
    assert book.observe({"j1": {("a", 1, 1): 12}}, ["j1"], T0 + timedelta(minutes=2), nothing_known) == {}


def test_what_the_log_already_holds_is_not_reported_again_after_a_restart() -> None:
    book = ActivityBook(grain=60)
    minute = rounded(T0, 60)
    book.observe({"j1": {}}, ["j1"], T0, lambda job: minute)
    assert book.observe({"j1": {("a", 1, 1): 1}}, ["j1"], T0 + timedelta(seconds=20),
                        lambda job: minute) == {}


def test_a_job_forwarded_since_the_last_look_counts_its_connections() -> None:
    book = ActivityBook(grain=60)
    book.observe({}, [], T0, nothing_known)
    assert book.observe({"j1": {("a", 1, 1): 3}}, ["j1"], T0 + timedelta(minutes=1), nothing_known) \
        == {"j1": rounded(T0 + timedelta(minutes=1), 60)}


def test_a_forward_that_moved_away_is_forgotten_and_starts_afresh_if_it_comes_back() -> None:
    book = ActivityBook(grain=60)
    book.observe({"j1": {("a", 1, 1): 5}}, ["j1"], T0, nothing_known)
    book.pending["j1"] = T0  # not appended before it moved
    assert book.observe({}, [], T0 + timedelta(minutes=1), nothing_known) == {}
    assert "j1" not in book.counters and "j1" not in book.pending
    # Back here: what its connections count now is new to this gateway.
    assert book.observe({"j1": {("a", 1, 1): 5}}, ["j1"], T0 + timedelta(minutes=2), nothing_known) \
        == {"j1": rounded(T0 + timedelta(minutes=2), 60)}


def test_conntrack_lines_are_parsed_with_both_directions_counted() -> None:
    text = ("ipv4 2 tcp 6 431995 ESTABLISHED src=192.0.2.7 dst=10.0.0.30 sport=40001 dport=20001 "
            "packets=3 bytes=180 src=10.0.0.20 dst=192.0.2.7 sport=7000 dport=40001 packets=2 bytes=120 "
            "[ASSURED] mark=0 use=1\nipv4 2 tcp 6 10 CLOSE src=garbage\nnot a line\n")
    assert parse_conntrack(text) == [Connection("192.0.2.7", 40001, "10.0.0.30", 20001, 5)]


# --- the agent's look ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    events, state = InMemoryEventStore(), InMemoryStateStore()
    jobs = LiveJobs(events, state)
    task = asyncio.create_task(jobs.run())
    gw = Gateway(name="gw0", own_ip=GW, events=events, state=state, jobs=jobs,
                 firewall=InMemoryFirewall(), prober=FakeProber())
    gw.table.put("j1", [ForwardRule(job_id="j1", external_port=20001, target_ip="10.0.0.20",
                                    internal_port=7000, gateway_ip=GW)], [])
    await events.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="t")])
    await events.append([ev.PortsAssigned(job_id="j1", gateway="gw0", nodes=["cn0"],
                                          forwards=[ev.Forward(internal_port=7000, external_port=20001)])])
    yield gw
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_one_read_per_look_and_an_event_only_when_the_activity_changed(gateway: Gateway) -> None:
    counters, clock = FakeTrafficCounters([conn(1, 5)]), Clock()
    activity = Activity(gateway, counters, interval=60, clock=clock)
    assert await activity.look_once() == []
    clock.now += timedelta(minutes=1)
    counters.now = [conn(1, 9), conn(2, 1)]
    [event] = await activity.look_once()
    assert (event.job_id, event.gateway, event.last_activity) == ("j1", "gw0", rounded(clock.now, 60))
    clock.now += timedelta(minutes=1)
    assert await activity.look_once() == []  # the same counters: no traffic, no event
    assert counters.reads == 3
    kinds = [type(e).__name__ for _, e in await gateway.events.read_job("j1")]
    assert kinds.count("SessionActivity") == 1
    view = gateway.jobs.get
    await eventually(lambda: (v := view("j1")) is not None and v.last_activity == event.last_activity,
                     "the read model holds the activity")


async def test_counters_that_cannot_be_read_report_activity_so_nothing_is_ended_as_idle(
        gateway: Gateway) -> None:
    counters, clock = FakeTrafficCounters(), Clock()
    counters.unavailable = True
    activity = Activity(gateway, counters, interval=60, clock=clock)
    await eventually(lambda: "j1" in gateway.table.rules, "the job's forward is installed")
    [event] = await activity.look_once()
    assert (event.job_id, event.last_activity) == ("j1", rounded(clock.now, 60))
    held = gateway.jobs.get
    await eventually(lambda: (v := held("j1")) is not None and v.last_activity == event.last_activity,
                     "the read model holds the activity")
    assert await activity.look_once() == []  # the same minute: nothing new to say


async def test_a_failed_append_is_reported_at_the_next_look(gateway: Gateway, monkeypatch) -> None:
    counters, clock = FakeTrafficCounters([]), Clock()
    activity = Activity(gateway, counters, interval=60, clock=clock)
    await activity.look_once()
    counters.now = [conn(1, 1)]
    clock.now += timedelta(minutes=1)
    real = gateway.events.append

    async def away(events: list[ev.Event], **kw: object) -> int:
        raise DependencyUnavailable("NATS is away")

    monkeypatch.setattr(gateway.events, "append", away)
    assert await activity.look_once() == []
    monkeypatch.setattr(gateway.events, "append", real)
    clock.now += timedelta(seconds=5)
    [event] = await activity.look_once()
    assert event.last_activity == rounded(T0 + timedelta(minutes=1), 60)


async def test_rules_rewritten_by_a_reconcile_neither_fake_nor_hide_traffic(gateway: Gateway) -> None:
    # The counters are the connections', not the rules': a reconcile that takes a job's rules out
    # and puts them back (its table entry replaced) changes nothing they count.
    counters, clock = FakeTrafficCounters([conn(1, 5)]), Clock()
    activity = Activity(gateway, counters, interval=60, clock=clock)
    await activity.look_once()
    rules = list(gateway.table.rules["j1"])
    gateway.table.drop("j1")
    gateway.table.put("j1", [ForwardRule(job_id="j1", external_port=r.external_port, target_ip=r.target_ip,
                                         internal_port=r.internal_port, gateway_ip=r.gateway_ip)
                             for r in rules], [])
    clock.now += timedelta(minutes=1)
    assert await activity.look_once() == [], "the same counts after a rewrite: no traffic"
    counters.now = [conn(1, 6)]
    clock.now += timedelta(minutes=1)
    assert [e.job_id for e in await activity.look_once()] == ["j1"]


async def test_a_job_whose_forwards_moved_to_another_gateway_is_no_longer_reported_here(
        gateway: Gateway) -> None:
    counters, clock = FakeTrafficCounters([conn(1, 5)]), Clock()
    activity = Activity(gateway, counters, interval=60, clock=clock)
    await activity.look_once()
    gateway.table.drop("j1")  # moved away: this gateway holds no rule of it any more
    counters.now = [conn(1, 50)]  # a connection the old rule let in lingers in conntrack
    clock.now += timedelta(minutes=1)
    assert await activity.look_once() == []
