"""keyhole-api allocation on real NATS and etcd: concurrent jobs never share a port."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.heartbeats import GatewayHeartbeats
from bwvisu_common.keyhole_client import PATH_TEMPLATE, request_body, sign
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.settings import parse_settings
from keyhole_api.handlers import KeyholeHandlers, Tuning
from tests.fakes.gateway_agents import ScriptedGatewayAgents

pytestmark = pytest.mark.integration
TOKEN = b"t" * 64


async def _service(event_store: JetStreamEventStore, state_store: EtcdStateStore,
                   agent: ScriptedGatewayAgents) -> AsyncIterator[KeyholeHandlers]:
    settings = parse_settings(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.10"}],
        "gateway-nodes": [{"name": "gw0", "internal-ip": "10.0.0.30", "external-ip": "10.0.0.30"},
                          {"name": "gw1", "internal-ip": "10.0.0.31", "external-ip": "10.0.0.31"}],
        "keyholed-port-range": {"min": 20000, "max": 20149},
    }).encode())
    health = GatewayHeartbeats()

    async def heartbeats() -> None:
        # As live agents do: a slow run must not outlast the gateways' last sign of life.
        while True:
            health.beat("gw0")
            health.beat("gw1")
            await asyncio.sleep(1)

    jobs = LiveJobs(event_store, state_store)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(heartbeats()), asyncio.create_task(jobs.run()),
             asyncio.create_task(event_store.consume(f"agent-{uuid.uuid4().hex[:8]}", agent.handle, stop))]
    yield KeyholeHandlers(settings, event_store, state_store, jobs, health,
                         tuning=Tuning(agent_timeout=10, attempts=6, picks_per_gateway=20))
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _job(events: JetStreamEventStore, state: EtcdStateStore, nodes: list[str]) -> str:
    job_id = ev.new_job_id()
    await events.append([ev.JobSubmitted(job_id=job_id, uid="alice", template_name="t"),
                         ev.JobStarted(job_id=job_id, nodes=nodes)])
    await state.put_secret(f"token/{job_id}", TOKEN, ttl=300)
    return job_id


async def _ask(service: KeyholeHandlers, job_id: str, count: int, nodes: list[str]) -> dict[str, object]:
    path, body, ts = PATH_TEMPLATE.format(job_id=job_id), request_body(count, nodes), str(int(time.time()))
    return await service.request_ports(job_id, path, ts, sign(TOKEN, "POST", path, ts, body), body)


async def test_fifty_concurrent_requests_never_share_a_port(
        event_store: JetStreamEventStore, state_store: EtcdStateStore) -> None:
    async for service in _service(event_store, state_store, ScriptedGatewayAgents(event_store)):
        jobs = [await _job(event_store, state_store, ["cn0"]) for _ in range(50)]
        answers = await asyncio.gather(*(_ask(service, j, 2, ["cn0"]) for j in jobs))
        external = [(a["gateway"], f["external-port"]) for a in answers for f in a["forwards"]]  # type: ignore[attr-defined]
        internal = [f["internal-port"] for a in answers for f in a["forwards"]]  # type: ignore[attr-defined]
        assert len(external) == 100 and len(set(external)) == 100
        assert len(set(internal)) == 100  # all on cn0: no two jobs got the same port there
        assert {g for g, _ in external} == {"gw0", "gw1"}  # least loaded spreads them
        held = await state_store.reservations("ports/")
        assert sorted(held) == sorted(f"ports/{g}/{p}" for g, p in external)


async def test_ports_in_use_are_released_and_other_ports_forwarded(
        event_store: JetStreamEventStore, state_store: EtcdStateStore) -> None:
    agent = ScriptedGatewayAgents(event_store, refuse_first=2)
    async for service in _service(event_store, state_store, agent):
        job = await _job(event_store, state_store, ["cn0", "cn1"])
        answer = await _ask(service, job, 2, ["cn1", "cn0"])
        got = {f["external-port"] for f in answer["forwards"]}  # type: ignore[attr-defined]
        refused = set(agent.refused)
        assert len(agent.refused) == 4 and not got & refused
        held = await state_store.reservations()
        assert sum(k.startswith("ports/") for k in held) == 2
        assert sum(k.startswith("nodeports/") for k in held) == 4  # 2 ports x 2 nodes
        kinds = [type(e).__name__ for _, e in await event_store.read_job(job)]
        assert kinds.count("PortsUnavailable") == 2 and kinds[-1] == "PortsForwarded"


def _signed(job_id: str, count: int, nodes: list[str], token: bytes = TOKEN,
            timestamp: str = "") -> tuple[str, str, str, bytes]:
    path, body = PATH_TEMPLATE.format(job_id=job_id), request_body(count, nodes)
    ts = timestamp or str(int(time.time()))
    return path, ts, sign(token, "POST", path, ts, body), body


async def test_a_grant_whose_answer_was_lost_is_answered_again_by_any_replica(
        event_store: JetStreamEventStore, state_store: EtcdStateStore) -> None:
    async for first in _service(event_store, state_store, ScriptedGatewayAgents(event_store)):
        job = await _job(event_store, state_store, ["cn0"])
        request = _signed(job, 2, ["cn0"])
        lost = await first.request_ports(job, *request)  # the client never saw this answer
        assert await first.request_ports(job, *request) == lost  # the same signed request again
        async for other in _service(event_store, state_store, ScriptedGatewayAgents(event_store)):
            # Another replica (or this one restarted): no memory, the grant lives in etcd.
            assert await other.request_ports(job, *_signed(job, 2, ["cn0"])) == lost
            assert await other.request_ports(job, *request) == lost
        kinds = [type(e).__name__ for _, e in await event_store.read_job(job)]
        assert kinds.count("PortsAssigned") == 1 and kinds.count("PortsRequested") == 1
        assert sum(k.startswith("ports/") for k in await state_store.reservations("ports/")) == 2


async def test_concurrent_requests_of_one_job_on_two_replicas_share_one_grant(
        event_store: JetStreamEventStore, state_store: EtcdStateStore) -> None:
    agent = ScriptedGatewayAgents(event_store)
    async for one in _service(event_store, state_store, agent):
        async for two in _service(event_store, state_store, agent):
            job = await _job(event_store, state_store, ["cn0"])
            answers = await asyncio.gather(*(s.request_ports(job, *_signed(job, 1, ["cn0"]))
                                             for s in (one, two, one, two)))
            assert all(a == answers[0] for a in answers)
            kinds = [type(e).__name__ for _, e in await event_store.read_job(job)]
            assert kinds.count("PortsAssigned") == 1


async def test_a_flood_of_unauthenticated_requests_adds_nothing_and_the_job_still_gets_its_ports(
        event_store: JetStreamEventStore, state_store: EtcdStateStore) -> None:
    import httpx

    from bwvisu_common.keyhole_client import SIGNATURE_HEADER, TIMESTAMP_HEADER
    from keyhole_api.app import create_app

    async for service in _service(event_store, state_store, ScriptedGatewayAgents(event_store)):
        job = await _job(event_store, state_store, ["cn0"])
        before = await event_store.read_job(job)
        app = create_app(service, GatewayHeartbeats())
        path, now = PATH_TEMPLATE.format(job_id=job), str(int(time.time()))
        floods: list[tuple[bytes, dict[str, bytes | str]]] = []
        for i in range(60):
            _, ts, sig, body = _signed(job, 1, ["cn0"], token=b"guess%d" % i)
            floods.append((body, {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sig}))  # bad signature
            _, ts, sig, body = _signed(job, 1, ["cn0"], timestamp=str(int(time.time()) - 3600))
            floods.append((body, {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sig}))  # stale (a replay)
            floods.append((body, {TIMESTAMP_HEADER: b"\xb2", SIGNATURE_HEADER: sig}))  # "²"
            floods.append((b"x" * 10_000, {TIMESTAMP_HEADER: now, SIGNATURE_HEADER: "0"}))  # too big
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k") as client:
            answers = await asyncio.gather(*(client.post(path, content=b, headers=h) for b, h in floods))
            assert sorted({a.status_code for a in answers}) == [401, 413]
            assert await event_store.read_job(job) == before  # nothing appended to the job's subject
            _, ts, sig, body = _signed(job, 1, ["cn0"])
            granted = await client.post(path, content=body, headers={TIMESTAMP_HEADER: ts,
                                                                      SIGNATURE_HEADER: sig})
            assert granted.status_code == 200 and len(granted.json()["forwards"]) == 1
            counted = (await client.get("/healthz")).json()["refused-unauthenticated"]
        assert counted == {"bad-signature": 60, "stale-timestamp": 60, "bad-timestamp": 60,
                           "body-too-large": 60}
        kinds = [type(e).__name__ for _, e in await event_store.read_job(job)]
        assert kinds == ["JobSubmitted", "JobStarted", "PortsRequested", "PortsAssigned", "PortsForwarded"]
