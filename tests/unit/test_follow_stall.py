"""A follower whose subscription stopped delivering while the stream moved on says so."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest

from bwvisu_common.adapters import jetstream
from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.errors import DependencyUnavailable


class Silent:
    """A subscription that delivers nothing (quiet stream, or dead consumer)."""

    async def next_msg(self, timeout: float | None = None) -> object:
        await asyncio.sleep(timeout or 0)
        raise nats.errors.TimeoutError


def store_at(last_seq: int) -> JetStreamEventStore:
    store = object.__new__(JetStreamEventStore)

    async def last() -> int:
        return last_seq

    store.last_seq = last  # type: ignore[method-assign]
    return store


async def test_a_subscription_silent_while_the_stream_moved_on_is_a_stall(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jetstream, "STALL_CHECK", 0.01)
    with pytest.raises(DependencyUnavailable, match="stalled after sequence 7"):
        await store_at(9)._first_of_batch(Silent(), [7])


async def test_a_quiet_stream_is_waited_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jetstream, "STALL_CHECK", 0.01)
    waiting = asyncio.create_task(store_at(7)._first_of_batch(Silent(), [7]))
    await asyncio.sleep(0.2)  # many checks: nothing is missing, so it waits on
    assert not waiting.done()
    waiting.cancel()


async def test_a_cancelled_follower_stops_even_when_its_request_turns_the_cancel_into_a_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jetstream, "STALL_CHECK", 0.01)
    store = object.__new__(JetStreamEventStore)

    async def last_seq() -> int:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:  # as nats-py's request does
            raise DependencyUnavailable("cannot read stream: timeout") from None
        return 7

    store.last_seq = last_seq  # type: ignore[method-assign]
    waiting = asyncio.create_task(store._first_of_batch(Silent(), [7]))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 2)
