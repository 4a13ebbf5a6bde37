"""Terms fenced by the holder's clock, and `lead`: work runs only while the role is held."""

from __future__ import annotations

import asyncio
import time

import pytest

from bwvisu_common.election import LeadershipLost, LeaseClock, Term, lead
from tests.conditions import eventually
from tests.fakes.election import ElectionBoard, FakeElection


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_term_is_held_until_ttl_after_the_last_acknowledged_refresh_was_sent() -> None:
    clock = Clock()
    lease = LeaseClock(3.0, granted_at=clock.now, clock=clock)
    term = Term("watcher", "a", lease, fence=7)
    clock.now += 2.5
    lease.renewed(sent_at=clock.now - 0.5)  # sent at 102, answered now: held until 105
    clock.now += 2.4
    assert term.held()
    term.check()
    clock.now += 0.2
    assert not term.held() and "not refreshed" in term.why()
    with pytest.raises(LeadershipLost, match="watcher"):
        term.check()


def test_losing_the_lease_ends_every_term_on_it_and_an_old_renewal_does_not_revive_it() -> None:
    clock = Clock()
    lease = LeaseClock(3.0, granted_at=clock.now, clock=clock)
    terms = [Term("watcher", "a", lease), Term("submit/j1", "a", lease)]
    lease.lose("etcd: connection refused")
    lease.renewed(sent_at=clock.now)
    assert not any(t.held() for t in terms) and lease.remaining() == 0
    assert all(t.why() == "etcd: connection refused" for t in terms)


async def test_wait_lost_returns_when_the_clock_runs_out_without_any_word() -> None:
    lease = LeaseClock(0.2, granted_at=time.monotonic())
    term = Term("watcher", "a", lease)
    await asyncio.wait_for(term.wait_lost(), 2)
    assert not term.held()


async def test_work_runs_while_the_role_is_held_and_stops_the_moment_it_is_lost() -> None:
    board = ElectionBoard()
    a, b = FakeElection(board, "a"), FakeElection(board, "b")
    running: dict[str, int] = {"a": 0, "b": 0}
    cancelled: list[str] = []
    stop = asyncio.Event()

    def work_of(name: str):  # type: ignore[no-untyped-def]
        async def work(term: Term) -> None:
            running[name] += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
        return work

    leaders = [asyncio.create_task(lead(a, "watcher", work_of("a"), stop)),
               asyncio.create_task(lead(b, "watcher", work_of("b"), stop))]
    try:
        await eventually(lambda: sum(running.values()) == 1, "one of them works")
        first, second = ("a", b) if running["a"] else ("b", a)
        holder = a if first == "a" else b
        holder.lose_lease()
        await eventually(lambda: cancelled == [first], "the work of the replica that lost its lease stops")
        await eventually(lambda: running[second.candidate] == 1, "the other takes over")
        assert running[first] == 1 and await a.holder("watcher") == second.candidate
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*leaders), 2)
    assert await a.holder("watcher") is None, "stopping gives the role up"


async def test_work_that_ends_gives_the_role_up_and_campaigns_again() -> None:
    board = ElectionBoard()
    a = FakeElection(board, "a")
    terms: list[Term] = []
    stop = asyncio.Event()

    async def work(term: Term) -> None:
        terms.append(term)
        if len(terms) == 3:
            stop.set()

    await asyncio.wait_for(lead(a, "watcher", work, stop), 2)
    assert len(terms) == 3 and len({t.fence for t in terms}) == 3
    assert not any(t.held() for t in terms)


async def test_an_unreachable_store_is_retried_until_it_answers() -> None:
    board = ElectionBoard()
    a = FakeElection(board, "a")
    a.unreachable = True
    stop = asyncio.Event()
    worked = asyncio.Event()

    async def work(term: Term) -> None:
        worked.set()
        await stop.wait()

    leading = asyncio.create_task(lead(a, "watcher", work, stop, retry=0.01))
    await asyncio.sleep(0.1)
    assert not worked.is_set() and not leading.done()
    a.unreachable = False
    await asyncio.wait_for(worked.wait(), 2)
    stop.set()
    await asyncio.wait_for(leading, 2)


async def test_an_error_in_the_work_is_the_caller_s() -> None:
    a = FakeElection(ElectionBoard(), "a")

    async def work(term: Term) -> None:
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        await asyncio.wait_for(lead(a, "watcher", work, asyncio.Event()), 2)
    assert await a.holder("watcher") is None
