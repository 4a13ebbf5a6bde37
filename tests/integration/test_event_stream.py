"""The stream itself: an older stream is upgraded in place, keeping its events; it is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from bwvisu_common import events as ev
from bwvisu_common.adapters.jetstream import (
    ACK_WAIT,
    ALL_SUBJECTS,
    STREAM,
    JetStreamEventStore,
    StreamLimits,
    connect_nats,
    job_subject,
)
from bwvisu_common.job_facts import FailureKind, JobState, Why, WhyKind
from bwvisu_common.read_model import fold

pytestmark = pytest.mark.integration


@pytest.fixture
async def old_stream(nats_server) -> AsyncIterator[tuple[NatsClient, JetStreamContext]]:
    """A stream as an earlier version made it (no atomic batches, no bounds); deleted afterwards."""
    nc = await connect_nats([nats_server.url], "test")
    js = nc.jetstream()
    try:
        await js.delete_stream(STREAM)
    except Exception:  # noqa: BLE001 - absent is fine
        pass
    try:
        await js.add_stream(StreamConfig(name=STREAM, subjects=[ALL_SUBJECTS], storage=StorageType.FILE))
        yield nc, js
    finally:
        await js.delete_stream(STREAM)
        await nc.close()


async def test_a_stream_without_atomic_batches_is_upgraded_and_keeps_its_events(old_stream):
    nc, js = old_stream
    old = JetStreamEventStore(nc)
    first = await old.append([ev.JobSubmitted(job_id="old", uid="alice", template_name="t")], 0)
    await old.ensure_stream()
    assert (await js.stream_info(STREAM)).config.allow_atomic
    decision = [ev.JobQueued(job_id="old", slurm_id="1"), ev.JobStarted(job_id="old", nodes=["cn0"])]
    await old.append(decision, first)
    assert [type(e).__name__ for _, e in await old.read_job("old")] == [
        "JobSubmitted", "JobQueued", "JobStarted"]


async def test_the_stream_is_bounded_and_an_unbounded_one_gets_the_limits(old_stream):
    nc, js = old_stream
    assert (await js.stream_info(STREAM)).config.max_msgs_per_subject in (None, -1)
    await JetStreamEventStore(nc).ensure_stream()  # the defaults
    config = (await js.stream_info(STREAM)).config
    assert config.max_bytes == 8 * 1024**3 and config.max_msgs_per_subject == 10_000
    assert config.max_age == 180 * 86400 and config.allow_atomic

    small = JetStreamEventStore(nc, limits=StreamLimits(max_bytes=10**6, max_age=3600, max_per_job=100))
    await small.ensure_stream()  # configured other limits: the stream follows
    config = (await js.stream_info(STREAM)).config
    assert (config.max_bytes, config.max_age, config.max_msgs_per_subject) == (10**6, 3600, 100)
    for i in range(105):
        await small.append([ev.PortClosed(job_id="noisy", external_port=20000 + i)])
    assert len(await small.read_job("noisy")) == 100  # a runaway job is capped


async def test_events_an_earlier_version_wrote_are_read_with_their_typed_facts(old_stream):
    nc, js = old_stream
    # As an earlier version wrote them: a note with only its words, a failure kind as plain text.
    written = [
        {"type": "JobSubmitted", "uid": "alice", "template_name": "t"},
        {"type": "JobQueued", "slurm_id": "7"},
        {"type": "JobDetailsChanged", "details": "waiting: Priority"},
        {"type": "JobDetailsChanged", "details": "Slurm cannot be asked right now: ssh: refused"},
    ]
    for n, fields in enumerate(written):
        raw = {"job_id": "old", "event_id": f"old-{n}", "time": "2025-06-01T10:00:00Z", **fields}
        await js.publish(job_subject("old"), msgspec.json.encode(raw))
    store = JetStreamEventStore(nc)
    await store.ensure_stream()
    history = await store.read_job("old")
    assert len(history) == len(written)
    waiting = fold(history[:3])
    assert waiting is not None and waiting.why == Why(WhyKind.QUEUED_WAITING, "Priority")
    job = fold(history)
    assert job is not None and job.state is JobState.SUBMITTED
    assert job.why == Why(WhyKind.SCHEDULER_UNREACHABLE, "ssh: refused")
    failed = {"job_id": "gone", "event_id": "gone-1", "time": "2025-06-01T10:00:00Z",
              "type": "JobSubmitFailed", "reason": "no such user: carol", "kind": "unknown-user"}
    await js.publish(job_subject("gone"), msgspec.json.encode(failed))
    [(_, event)] = await store.read_job("gone")
    assert isinstance(event, ev.JobSubmitFailed) and event.kind is FailureKind.UNKNOWN_USER


async def test_a_durable_consumer_an_earlier_version_made_takes_todays_settings(old_stream):
    nc, js = old_stream
    await js.add_consumer(STREAM, ConsumerConfig(durable_name="sched", ack_policy=AckPolicy.EXPLICIT,
                                                 ack_wait=60, filter_subject=ALL_SUBJECTS))
    store = JetStreamEventStore(nc)
    await store.ensure_stream()
    await store.append([ev.JobSubmitted(job_id="j", uid="alice", template_name="t")])
    seen: list[str] = []
    stop = asyncio.Event()

    async def handler(_seq: int, event: ev.AnyEvent) -> None:
        seen.append(event.job_id)
        stop.set()

    await asyncio.wait_for(store.consume("sched", handler, stop), 20)
    assert seen == ["j"]
    assert (await js.consumer_info(STREAM, "sched")).config.ack_wait == ACK_WAIT
