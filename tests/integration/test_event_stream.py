"""The stream itself: an older stream is upgraded in place, keeping its events."""

from __future__ import annotations

import pytest
from nats.js.api import StorageType, StreamConfig

from bwvisu_common import events as ev
from bwvisu_common.adapters.jetstream import ALL_SUBJECTS, STREAM, JetStreamEventStore, connect_nats

pytestmark = pytest.mark.integration


async def test_a_stream_without_atomic_batches_is_upgraded_and_keeps_its_events(nats_server):
    nc = await connect_nats([nats_server.url], "test")
    js = nc.jetstream()
    try:
        await js.delete_stream(STREAM)
    except Exception:  # noqa: BLE001 - absent is fine
        pass
    try:
        await js.add_stream(StreamConfig(name=STREAM, subjects=[ALL_SUBJECTS], storage=StorageType.FILE))
        old = JetStreamEventStore(nc)
        first = await old.append([ev.JobSubmitted(job_id="old", uid="alice", template_name="t")], 0)
        await old.ensure_stream()
        assert (await js.stream_info(STREAM)).config.allow_atomic
        decision = [ev.JobQueued(job_id="old", slurm_id="1"), ev.JobStarted(job_id="old", nodes=["cn0"])]
        await old.append(decision, first)
        assert [type(e).__name__ for _, e in await old.read_job("old")] == [
            "JobSubmitted", "JobQueued", "JobStarted"]
    finally:
        await js.purge_stream(STREAM)
        await nc.close()
