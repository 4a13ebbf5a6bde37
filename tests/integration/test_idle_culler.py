"""The idle culler in several scheduler-adapters at once, on real nats-server and etcd: a session
idle past the site's idle-timeout is cancelled once, with the reason "idle", whichever replica
holds the idle role; one that carries traffic is not."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.heartbeats import Heartbeat, heartbeat_subject
from bwvisu_common.settings import Settings, load_settings
from scheduler_adapter.service import run
from tests.conftest import Server
from tests.fakes.command_runner import FakeCommandRunner
from tests.integration.test_scheduler_replicas import until
from tests.samples import NO_METRICS_PORTS

pytestmark = pytest.mark.integration

FWD = [ev.Forward(internal_port=7000, external_port=20001)]


def idle_settings(tmp_path: Path, nats: Server, etcd: Server) -> Settings:
    path = tmp_path / "bwvisu.json"
    path.write_text(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],
        "nats-servers": [nats.url], "etcd-servers": [f"{etcd.host}:{etcd.port}"],
        "state-dir": str(tmp_path), "credentials": {"required": False, "tls": False},
        # The watcher polls seldom: its absent job would end before it is idle.
        "scheduler": {"poll-interval": 60}, "metrics": NO_METRICS_PORTS,
        "idle-timeout": 0.05, "activity-interval": 0.5,  # 3 s without traffic
    }))
    return load_settings(path)


def answering(job_id: str) -> list[ev.Event]:
    return [ev.JobSubmitted(job_id=job_id, uid="alice", template_name="port-echo"),
            ev.JobQueued(job_id=job_id, slurm_id="4711"),
            ev.JobStarted(job_id=job_id, nodes=["cn0"]),
            ev.PortsAssigned(job_id=job_id, gateway="gw0", nodes=["cn0"], forwards=FWD),
            ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=FWD),
            ev.PortOpen(job_id=job_id, external_port=20001, gateway="gw0")]


async def idle_cancels(events: JetStreamEventStore, job_id: str) -> list[ev.JobCancelRequested]:
    return [e for _, e in await events.read_job(job_id) if isinstance(e, ev.JobCancelRequested)]


async def test_one_replica_cancels_an_idle_session_once_and_spares_one_with_traffic(
    tmp_path: Path, nats_server: Server, etcd_server: Server, event_store: JetStreamEventStore
) -> None:
    store = await EtcdStateStore.connect(etcd_server.host, etcd_server.port)
    try:
        await store.wipe_projection()  # the etcd server is shared with earlier tests
    finally:
        await store.close()
    conf = idle_settings(tmp_path, nats_server, etcd_server)
    silent, talking = (f"idle-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for job_id in (silent, talking):
        await event_store.append(answering(job_id), expected_version=0)
    stop = asyncio.Event()
    scancel = ["sudo", "-n", "-u", "alice", "scancel", "**"]
    runners = [FakeCommandRunner().on(["squeue", "**"], "").on(scancel, "") for _ in range(3)]
    tasks = [asyncio.create_task(run(conf, stop=stop, runner=r)) for r in runners]

    async def talk() -> None:
        """gw0's agent: it beats (so it counts) and reports the talking session's traffic."""
        beat = msgspec.json.encode(Heartbeat(gateway="gw0"))
        while not stop.is_set():
            await event_store.nats.publish(heartbeat_subject("gw0"), beat)
            await event_store.append([ev.SessionActivity(job_id=talking, gateway="gw0",
                                                         last_activity=ev.utcnow())])
            await asyncio.sleep(0.5)

    talker = asyncio.create_task(talk())
    try:
        async def cancelled() -> bool:
            return bool(await idle_cancels(event_store, silent))

        await until(cancelled, "the silent session cancelled", timeout=30)
        await asyncio.sleep(2 * conf.activity_interval + 1)  # every replica had looks since
        [cancel] = await idle_cancels(event_store, silent)
        assert cancel.reason == "idle"
        assert await idle_cancels(event_store, talking) == [], "traffic keeps a session"
        opened = (await event_store.read_job(silent))[5][1]
        assert isinstance(opened, ev.PortOpen)
        assert cancel.time - opened.time >= timedelta(minutes=conf.idle_timeout), "not before the limit"
    finally:
        stop.set()
        talker.cancel()
        await asyncio.gather(talker, return_exceptions=True)
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
