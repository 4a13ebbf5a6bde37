"""An event in a durable consumer's hands is reported in progress until handled, then acked."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from bwvisu_common import events as ev
from bwvisu_common.adapters import jetstream


class Msg:
    """What nats-py hands a pull consumer, recording what it is told."""

    def __init__(self, event: ev.Event) -> None:
        self.data = msgspec.json.encode(event)
        self.subject = f"bwvisu.jobs.{event.job_id}.x"
        self.metadata = type("Meta", (), {"sequence": type("Seq", (), {"stream": 7})()})()
        self.told: list[str] = []

    async def in_progress(self) -> None:
        self.told.append("in progress")

    async def ack(self) -> None:
        self.told.append("ack")

    async def nak(self, delay: float = 0) -> None:
        self.told.append("nak")


async def test_a_slow_handler_keeps_its_event_and_a_handled_one_is_acked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jetstream, "ACK_WAIT", 0.06)
    msg = Msg(ev.JobSubmitted(job_id="j", uid="alice", template_name="t"))
    handled: list[int] = []

    async def slow(seq: int, event: ev.AnyEvent) -> None:
        await asyncio.sleep(0.2)
        handled.append(seq)

    ticking = asyncio.create_task(jetstream._in_progress(msg))
    await jetstream._handle_one("scheduler-adapter", slow, msg, ticking)
    assert handled == [7]
    assert msg.told[-1] == "ack" and msg.told.count("in progress") >= 3
    told = len(msg.told)
    await asyncio.sleep(0.1)
    assert len(msg.told) == told, "nothing more once handled"


async def test_a_handler_that_hangs_is_stopped_and_its_event_redelivered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jetstream, "ACK_WAIT", 0.06)
    monkeypatch.setattr(jetstream, "MAX_IN_PROGRESS", 0.2)
    msg = Msg(ev.JobSubmitted(job_id="j", uid="alice", template_name="t"))

    async def hangs(seq: int, event: ev.AnyEvent) -> None:
        await asyncio.Event().wait()

    ticking = asyncio.create_task(jetstream._in_progress(msg))
    await asyncio.wait_for(jetstream._handle_one("scheduler-adapter", hangs, msg, ticking), 2.0)
    assert msg.told[-1] == "nak" and "ack" not in msg.told  # another replica, or a later try, gets it
    told = len(msg.told)
    await asyncio.sleep(0.1)
    assert len(msg.told) == told, "no more in-progress reports for it"
