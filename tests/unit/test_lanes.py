"""Lanes: different keys at once, one key in order, never more than the limit."""

from __future__ import annotations

import asyncio

import pytest

from bwvisu_common.lanes import Lanes


async def test_one_key_in_order_other_keys_at_once_within_the_limit() -> None:
    lanes = Lanes(3)
    release = asyncio.Event()
    running: list[str] = []
    done: list[str] = []
    most = 0

    def work(name: str) -> object:
        async def run() -> None:
            nonlocal most
            running.append(name)
            most = max(most, len(running))
            await release.wait()
            running.remove(name)
            done.append(name)
        return run

    for name in ("a1", "b1", "a2"):
        await lanes.start(name[0], work(name))  # type: ignore[arg-type]
    late = asyncio.create_task(lanes.start("c", work("c1")))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    # a2 waits for a1 and holds the last slot: c1 waits for one.
    assert sorted(running) == ["a1", "b1"] and not late.done()
    release.set()
    await asyncio.wait_for(late, 1)
    await lanes.drain()
    assert done.index("a1") < done.index("a2") and most <= 3


async def test_a_failure_does_not_stop_the_lane_behind_it() -> None:
    lanes = Lanes(2)
    done: list[int] = []

    async def fail() -> None:
        raise RuntimeError("boom")

    async def second() -> None:
        done.append(2)

    await lanes.start("k", fail)
    await lanes.start("k", second)
    await lanes.drain()
    assert done == [2] and lanes.busy == 0


async def test_start_waits_for_a_free_slot() -> None:
    lanes = Lanes(1)
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    async def quick() -> None:
        pass

    await lanes.start("a", hold)
    waiting = asyncio.create_task(lanes.start("b", quick))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    release.set()
    await asyncio.wait_for(waiting, 1)
    await lanes.drain()


def test_at_least_one_lane() -> None:
    with pytest.raises(ValueError):
        Lanes(0)


async def test_room_waits_for_a_free_lane_and_says_how_many_are_free() -> None:
    lanes = Lanes(2)
    assert await lanes.room() == 2
    release = asyncio.Event()
    for key in ("a", "b"):
        await lanes.start(key, release.wait)
    asking = asyncio.create_task(lanes.room())
    await asyncio.sleep(0.05)
    assert not asking.done(), "no lane free: it waits"
    release.set()
    assert await asyncio.wait_for(asking, 1) >= 1
    await lanes.drain()
