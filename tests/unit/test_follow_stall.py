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
