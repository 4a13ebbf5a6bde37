"""A NATS server or an etcd member dying under running stores: they go on at another, unrestarted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aetcd
import pytest

from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.etcd_members import CALL_TIMEOUT
from bwvisu_common.adapters.jetstream import STREAM, JetStreamEventStore, connect_nats
from bwvisu_common.connect import open_stores_retrying
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.projector import Projector
from bwvisu_common.read_model import JobView
from bwvisu_common.settings import Settings, parse_settings
from tests.clusters import LocalCluster, etcd_cluster, nats_cluster
from tests.conditions import eventually

pytestmark = pytest.mark.integration


def _base(tmp_path: Path, name: str) -> Path:
    base = tmp_path / name
    base.mkdir()
    return base


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[LocalCluster]:
    with etcd_cluster(_base(tmp_path, "etcd")) as cluster:
        yield cluster


@pytest.fixture
def nats3(tmp_path: Path) -> Iterator[LocalCluster]:
    with nats_cluster(_base(tmp_path, "nats")) as cluster:
        yield cluster


@pytest.fixture
async def cluster_store(etcd3: LocalCluster) -> AsyncIterator[EtcdStateStore]:
    store = await EtcdStateStore.connect_cluster([(m.host, m.port) for m in etcd3.members],
                                                 prefix=f"/test-{uuid.uuid4().hex[:8]}/")
    try:
        yield store
    finally:
        await store.close()


async def test_an_etcd_store_goes_on_at_another_member_when_its_member_dies(etcd3, cluster_store):
    store = cluster_store
    assert await store.save_jobs([JobView(job_id="a")], 1, 0)
    first = etcd3.member_at(store.member)
    etcd3.kill(first)
    assert await store.get_job("a") == JobView(job_id="a")
    assert store.member != first.address
    assert await store.reserve(["gw0/1"], "a")
    assert await store.save_jobs([JobView(job_id="b")], 2, 1)
    await store.put_secret("token/b", b"s3cret", ttl=60)
    assert await store.get_secret("token/b") == b"s3cret"
    assert await store.load_jobs() == ({"a": JobView(job_id="a"), "b": JobView(job_id="b")}, 2)
    assert await store.release_job("a", ["gw0/1"]) == 1


async def test_calls_waiting_on_a_member_that_stopped_answering_go_on_at_another(etcd3, cluster_store):
    store = cluster_store
    assert await store.save_jobs([JobView(job_id="a")], 1, 0)

    async def read_later(delay: float) -> JobView | None:
        await asyncio.sleep(delay)
        return await store.get_job("a")

    with etcd3.paused(etcd3.member_at(store.member)):
        started = time.monotonic()
        found = await asyncio.gather(*(read_later(i * 0.2) for i in range(10)))
        took = time.monotonic() - started
    assert found == [JobView(job_id="a")] * 10, "no call failed, none was cancelled by the move"
    assert took < 2 * CALL_TIMEOUT + 3


async def test_a_reservation_that_reached_no_member_is_made_at_the_next(cluster_store, monkeypatch):
    store = cluster_store
    before = store.member
    txn = store._txn

    async def refused_once(compare, success):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(store, "_txn", txn)
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise aetcd.ConnectionFailedError("failed to connect to all addresses") from exc

    monkeypatch.setattr(store, "_txn", refused_once)
    assert await store.reserve(["gw0/8"], "job1")
    assert store.member != before
    assert await store.reservations() == {"gw0/8": "job1"}


async def test_a_reservation_whose_answer_was_lost_is_not_made_again(cluster_store, monkeypatch):
    """Made again, it would find its own hold and say "taken": a job would be told wrongly."""
    store = cluster_store
    before = store.member
    txn = store._txn

    async def answer_lost(compare, success):  # type: ignore[no-untyped-def]
        await txn(compare, success)
        raise aetcd.ConnectionTimeoutError("Deadline Exceeded")

    monkeypatch.setattr(store, "_txn", answer_lost)
    with pytest.raises(DependencyUnavailable):
        await store.reserve(["gw0/9"], "job1")
    monkeypatch.undo()
    assert store.member != before, "the member that did not answer is left"
    assert await store.reservations() == {"gw0/9": "job1"}


async def _stream_ready(events: JetStreamEventStore) -> None:
    """The cluster elects its JetStream leader a few seconds after it starts."""

    async def made() -> bool:
        try:
            await events.ensure_stream()
        except DependencyUnavailable:
            return False
        return True

    await eventually(made, "a stream with three replicas", timeout=30, interval=0.5)


def _settings(nats3: LocalCluster, etcd3: LocalCluster) -> Settings:
    return parse_settings(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}], "stream-replicas": 3,
        "nats-servers": [f"nats://{m.address}" for m in nats3.members],
        "etcd-servers": [m.address for m in etcd3.members],
    }).encode())


@pytest.mark.parametrize("victim", ["the stream's leader", "the server the stores are connected to",
                                    "the server the stores are connected to, silent"])
async def test_a_job_appended_after_a_nats_server_dies_reaches_the_read_model(victim, nats3, etcd3):
    """A service's stores, made from its settings: one NATS server and one etcd member die, or fall
    silent (stopped, their sockets open: as when their host's link goes down)."""
    async with contextlib.AsyncExitStack() as stack:
        events, state = await asyncio.wait_for(
            open_stores_retrying(_settings(nats3, etcd3), stack, "projector"), 60)
        js = events.nats.jetstream()
        assert (await js.stream_info(STREAM)).config.num_replicas == 3
        live, projector = LiveJobs(events, state), Projector(events, state)
        tasks = [asyncio.create_task(live.run()), asyncio.create_task(projector.run())]
        stack.push_async_callback(_cancelled, tasks)
        await events.append([ev.JobSubmitted(job_id="before", uid="alice", template_name="t")], 0)
        await eventually(lambda: live.get("before") is not None, "LiveJobs has the first job", timeout=10)
        await eventually(lambda: projector.get("before") is not None, "the projector has it", timeout=10)
        if victim == "the stream's leader":
            info = await js.stream_info(STREAM)
            assert info.cluster is not None
            dead = next(m for m in nats3.members if m.name == info.cluster.leader)
        else:
            dead = nats3.member_at(events.nats.connected_url.netloc)
        if victim.endswith("silent"):
            stack.enter_context(nats3.paused(dead))
            stack.enter_context(etcd3.paused(etcd3.member_at(state.member)))
        else:
            nats3.kill(dead)
            etcd3.kill(etcd3.member_at(state.member))

        seq = await events.append([ev.JobSubmitted(job_id="after", uid="bob", template_name="t")], 0)
        await eventually(lambda: live.get("after") is not None, "LiveJobs has the job appended after",
                         timeout=15)

        async def projected() -> bool:
            return await state.get_job("after") is not None

        await eventually(projected, "etcd's read model has it", timeout=15, interval=0.2)
        assert [s for s, _ in await events.read_job("after")] == [seq], "stored once"
        assert not any(t.done() for t in tasks), "the followers run on, unrestarted"


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_durable_consumer_goes_on_when_the_streams_leader_dies(nats3):
    """The gateway agents' and the scheduler-adapter's way of reading: no event lost (at least once:
    an acknowledgement the dead leader took with it brings its event again)."""
    nc = await connect_nats([f"nats://{m.address}" for m in nats3.members], "tests")
    events = JetStreamEventStore(nc, replicas=3)
    await _stream_ready(events)
    handled: list[str] = []

    async def handle(seq: int, event: ev.AnyEvent) -> None:
        handled.append(event.job_id)

    stop = asyncio.Event()
    consumer = asyncio.create_task(events.consume("failover-test", handle, stop))
    try:
        await events.append([ev.JobSubmitted(job_id="before", uid="alice", template_name="t")], 0)
        await eventually(lambda: handled == ["before"], "the first event handled", timeout=10)
        info = await nc.jetstream().stream_info(STREAM)
        assert info.cluster is not None
        nats3.kill(next(m for m in nats3.members if m.name == info.cluster.leader))
        await events.append([ev.JobSubmitted(job_id="after", uid="bob", template_name="t")], 0)
        await eventually(lambda: "after" in handled, "the event appended after handled",
                         timeout=20, interval=0.1)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, 10)
        await nc.close()

