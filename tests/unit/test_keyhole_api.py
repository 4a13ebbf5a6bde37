"""keyhole-api: verification refusals and allocation, on in-memory stores with a scripted agent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bwvisu_common import events as ev
from bwvisu_common.heartbeats import GatewayHeartbeats
from bwvisu_common.keyhole_client import PATH_TEMPLATE, request_body, sign
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.settings import Settings, parse_settings
from keyhole_api.app import create_app, status_of
from keyhole_api.domain.allocate import gateway_order, pick_forwards
from keyhole_api.errors import NoCapacity, Refused
from keyhole_api.handlers import KeyholeHandlers, Tuning
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.gateway_agents import ScriptedGatewayAgents
from tests.fakes.state_store import InMemoryStateStore
from tests.samples import sample

TOKEN = b"k" * 64


def make_settings(static: bool = False, lo: int = 20000, hi: int = 20099) -> Settings:
    return parse_settings(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.10"}],
        "gateway-nodes": [{"name": "gw0", "internal-ip": "10.0.0.30", "external-ip": "1.2.3.30"},
                          {"name": "gw1", "internal-ip": "10.0.0.31", "external-ip": "1.2.3.31"}],
        "keyholed-port-range": {"min": lo, "max": hi}, "keyholed-max-forwarders-per-job": 4,
        "debug": {"keyholed-static-forwarding": static},
    }).encode())


@dataclass
class World:
    events: InMemoryEventStore
    state: InMemoryStateStore
    health: GatewayHeartbeats
    agent: ScriptedGatewayAgents
    handlers: KeyholeHandlers

    async def job(self, job_id: str, nodes: list[str] | None = None) -> None:
        await self.events.append([ev.JobSubmitted(job_id=job_id, uid="alice", template_name="t"),
                                  ev.JobStarted(job_id=job_id, nodes=nodes or ["cn0"])])
        await self.state.put_secret(f"token/{job_id}", TOKEN, ttl=600)

    async def ask(self, job_id: str, count: int = 1, nodes: list[str] | None = None, *,
                  token: bytes = TOKEN, skew: float = 0, body: bytes | None = None,
                  timestamp: str | None = None) -> dict[str, object]:
        path = PATH_TEMPLATE.format(job_id=job_id)
        body = body or request_body(count, nodes or ["cn0"])
        ts = timestamp or str(int(time.time() + skew))
        return await self.handlers.request_ports(job_id, path, ts, sign(token, "POST", path, ts, body), body)

    async def kinds(self, job_id: str) -> list[str]:
        return [type(e).__name__ for _, e in await self.events.read_job(job_id)]


async def _world(settings: Settings) -> AsyncIterator[World]:
    events, state = InMemoryEventStore(), InMemoryStateStore()
    health = GatewayHeartbeats()
    for g in ("gw0", "gw1"):
        health.beat(g)
    jobs = LiveJobs(events, state)
    agent = ScriptedGatewayAgents(events)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(jobs.run()),
             asyncio.create_task(events.consume("agent", agent.handle, stop))]
    handlers = KeyholeHandlers(settings, events, state, jobs, health,
                              tuning=Tuning(start_wait=0.3, agent_timeout=0.3))
    yield World(events, state, health, agent, handlers)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async for w in _world(make_settings()):
        yield w


async def test_a_valid_request_gets_forwarded_ports(world: World) -> None:
    await world.job("j1")
    answer = await world.ask("j1", count=2)
    forwards = answer["forwards"]
    assert isinstance(forwards, list) and len(forwards) == 2
    assert {f["external-ip"] for f in forwards} == {"1.2.3.30"}  # both idle: gw0 by name
    assert all(20000 <= f[k] <= 20099 for f in forwards for k in ("internal-port", "external-port"))
    assert await world.kinds("j1") == ["JobSubmitted", "JobStarted", "PortsRequested", "PortsAssigned",
                                       "PortsForwarded"]
    held = await world.state.reservations()
    assert set(held.values()) == {"j1"}
    assert "grants/j1" in held and sum(k.startswith("ports/gw0/") for k in held) == 2


@pytest.mark.parametrize(("how", "status", "reason"), [
    ({"count": 5}, 400, "too many ports"),
    ({"nodes": ["cn1"]}, 403, "not the job's nodes: cn1"),
    ({"nodes": ["cn0", "login0"]}, 403, "not the job's nodes: login0"),
    ({"body": b"not json"}, 400, "JSON"),
])
async def test_refusals_of_the_job_are_4xx_recorded_and_assign_nothing(
        world: World, how: dict[str, object], status: int, reason: str) -> None:
    await world.job("j1")
    with pytest.raises(Refused) as refused:
        await world.ask("j1", **how)  # type: ignore[arg-type]
    assert status_of(refused.value) == status and reason in refused.value.reason
    kinds = await world.kinds("j1")
    assert kinds[-1] == "PortsRefused" and "PortsAssigned" not in kinds
    assert await world.state.reservations() == {}


@pytest.mark.parametrize(("how", "reason", "kind"), [
    ({"token": b"forged" * 8}, "bad signature", "bad-signature"),
    ({"skew": -3600}, "stale timestamp", "stale-timestamp"),
    ({"skew": 3600}, "stale timestamp", "stale-timestamp"),
    ({"timestamp": "\u00b2"}, "malformed timestamp", "bad-timestamp"),
    ({"timestamp": "\u0661\u0662"}, "malformed timestamp", "bad-timestamp"),  # Arabic-Indic digits
    ({"timestamp": "-5"}, "malformed timestamp", "bad-timestamp"),
])
async def test_unauthenticated_refusals_are_401_counted_and_not_recorded(
        world: World, how: dict[str, object], reason: str, kind: str) -> None:
    await world.job("j1")
    before = await world.events.last_seq()
    with pytest.raises(Refused) as refused:
        await world.ask("j1", **how)  # type: ignore[arg-type]
    assert status_of(refused.value) == 401 and reason in refused.value.reason
    assert await world.events.last_seq() == before  # nothing an unknown sender says is appended
    assert world.handlers.unauthenticated == {kind: 1}
    assert await world.state.reservations() == {}


@pytest.mark.parametrize("node", ["cn0\nforged", "cn0 x", "-cn0", "cn0;reboot", "c" * 254, "a..b", "ü"])
async def test_bad_node_names_are_refused_without_echoing_them(world: World, node: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    await world.job("j1")
    with pytest.raises(Refused) as refused:
        await world.ask("j1", nodes=[node])
    assert status_of(refused.value) == 400 and "not host names" in refused.value.reason
    assert node not in refused.value.reason and node not in caplog.text
    events = [e for _, e in await world.events.read_job("j1")]
    assert not any(node in str(e) for e in events)


async def test_a_retry_of_the_same_signed_request_gets_the_same_ports(world: World) -> None:
    await world.job("j1")
    path, body, ts = PATH_TEMPLATE.format(job_id="j1"), request_body(2, ["cn0"]), str(int(time.time()))
    sig = sign(TOKEN, "POST", path, ts, body)
    first = await world.handlers.request_ports("j1", path, ts, sig, body)  # its answer got lost
    again = await world.handlers.request_ports("j1", path, ts, sig, body)
    fresh = await world.ask("j1", count=2)  # the client's next attempt signs a new body
    assert again == first and fresh == first
    assert (await world.kinds("j1")).count("PortsAssigned") == 1
    with pytest.raises(Refused, match="2 port.s. were already granted") as refused:
        await world.ask("j1", count=1)
    assert status_of(refused.value) == 409


async def test_concurrent_requests_of_one_job_share_one_grant(world: World) -> None:
    await world.job("j1")
    answers = await asyncio.gather(*(world.ask("j1") for _ in range(3)))
    assert answers[0] == answers[1] == answers[2]
    assert (await world.kinds("j1")).count("PortsAssigned") == 1


async def test_a_restarted_service_answers_with_the_standing_grant(world: World) -> None:
    await world.job("j1")
    first = await world.ask("j1")
    jobs = LiveJobs(world.events, world.state)  # a new replica: no memory of the first request
    task = asyncio.create_task(jobs.run())
    try:
        other = KeyholeHandlers(make_settings(), world.events, world.state, jobs, world.health,
                                tuning=Tuning(start_wait=0.3, agent_timeout=0.3))
        path, body, ts = PATH_TEMPLATE.format(job_id="j1"), request_body(1, ["cn0"]), str(int(time.time()))
        again = await other.request_ports("j1", path, ts, sign(TOKEN, "POST", path, ts, body), body)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert again == first and (await world.kinds("j1")).count("PortsAssigned") == 1


async def test_a_replay_without_a_standing_grant_gets_nothing(world: World) -> None:
    world.health.forget("gw0")
    world.health.forget("gw1")
    await world.job("j1")
    path, body, ts = PATH_TEMPLATE.format(job_id="j1"), request_body(1, ["cn0"]), str(int(time.time()))
    sig = sign(TOKEN, "POST", path, ts, body)
    with pytest.raises(NoCapacity):
        await world.handlers.request_ports("j1", path, ts, sig, body)
    world.health.beat("gw0")
    with pytest.raises(Refused, match="replayed request"):
        await world.handlers.request_ports("j1", path, ts, sig, body)
    assert "PortsAssigned" not in await world.kinds("j1")


async def test_a_grant_left_without_progress_is_taken_over(world: World) -> None:
    await world.job("j1")
    await world.state.reserve(["grants/j1"], "j1")  # a replica died right after reserving
    world.handlers._tuning.stale_grant = 0.0
    answer = await world.ask("j1")
    assert answer["gateway"] == "gw0" and (await world.kinds("j1")).count("PortsAssigned") == 1


async def test_unknown_job_is_404_without_an_event(world: World) -> None:
    with pytest.raises(Refused) as refused:
        await world.ask("nosuchjob")
    assert status_of(refused.value) == 404
    assert await world.events.last_seq() == 0
    assert world.handlers.unauthenticated == {"unknown-job": 1}


async def test_a_job_not_running_is_refused(world: World) -> None:
    await world.events.append([ev.JobSubmitted(job_id="j2", uid="alice", template_name="t")])
    await world.state.put_secret("token/j2", TOKEN, ttl=60)
    with pytest.raises(Refused, match="submitted, not running"):
        await world.ask("j2")


async def test_least_loaded_live_gateway_first(world: World) -> None:
    await world.state.reserve(["ports/gw0/20050", "ports/gw0/20051"], "other")
    await world.job("j1")
    assert (await world.ask("j1"))["gateway"] == "gw1"
    world.health.forget("gw1")  # only gw0 alive now
    await world.job("j2")
    assert (await world.ask("j2"))["gateway"] == "gw0"


async def test_ports_in_use_are_released_and_others_tried(world: World) -> None:
    world.agent.refuse_first = 2
    await world.job("j1")
    answer = await world.ask("j1")
    (fwd,) = answer["forwards"]  # type: ignore[misc]
    assert len(world.agent.refused) == 2 and fwd["external-port"] not in world.agent.refused
    kinds = await world.kinds("j1")
    assert kinds.count("PortsUnavailable") == 2 and kinds[-1] == "PortsForwarded"
    held = await world.state.reservations("ports/")
    assert held == {f"ports/{answer['gateway']}/{fwd['external-port']}": "j1"}


async def test_a_silent_agent_is_skipped_for_another_gateway(world: World) -> None:
    world.agent.silent = {"gw0"}
    await world.job("j1")
    assert (await world.ask("j1"))["gateway"] == "gw1"
    assert await world.state.reservations("ports/gw0/") == {}


async def test_no_live_gateway_is_503_and_the_grant_is_given_back(world: World) -> None:
    world.health.forget("gw0")
    world.health.forget("gw1")
    await world.job("j1")
    with pytest.raises(NoCapacity):
        await world.ask("j1")
    assert await world.state.reservations() == {}
    world.health.beat("gw1")
    assert (await world.ask("j1"))["gateway"] == "gw1"  # the client's retry succeeds


async def test_static_forwarding_uses_the_same_port_inside() -> None:
    async for w in _world(make_settings(static=True)):
        await w.job("j1", nodes=["cn0", "cn1"])
        answer = await w.ask("j1", count=3, nodes=["cn1", "cn0"])
        for f in answer["forwards"]:  # type: ignore[attr-defined]
            assert f["internal-port"] == f["external-port"]
        held = await w.state.reservations("nodeports/")
        assert len(held) == 6  # each internal port held on both nodes


def test_allocation_helpers() -> None:
    assert gateway_order(["gw1", "gw0", "gw2"], {"gw0": 3, "gw1": 1}) == ["gw2", "gw1", "gw0"]
    picked = pick_forwards(2, (10, 13), taken_external={10, 11}, taken_internal={12}, static=False)
    assert picked is not None and {f.external_port for f in picked} == {12, 13}
    assert all(f.internal_port != 12 for f in picked)
    assert pick_forwards(3, (10, 13), taken_external={10, 11}, taken_internal=set(), static=False) is None
    static = pick_forwards(1, (10, 12), taken_external={10}, taken_internal={11}, static=True)
    assert static == [ev.Forward(internal_port=12, external_port=12)]


async def test_http_edge_maps_refusals_and_grants(world: World) -> None:
    import httpx

    from bwvisu_common.keyhole_client import SIGNATURE_HEADER, TIMESTAMP_HEADER

    await world.job("j1")
    app = create_app(world.handlers, world.health)
    path, body, ts = PATH_TEMPLATE.format(job_id="j1"), request_body(1, ["cn0"]), str(int(time.time()))
    headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(b"x" * 64, "POST", path, ts, body)}
    refusals, grants = sample("bwvisu_keyhole_refusals_total", reason="not-authentic"), sample(
        "bwvisu_keyhole_grants_total")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k") as client:
        forged = await client.post(path, content=body, headers=headers)
        assert forged.status_code == 401 and forged.json() == {"detail": "bad signature"}
        headers[SIGNATURE_HEADER] = sign(TOKEN, "POST", path, ts, body)
        granted = await client.post(path, content=body, headers=headers)
        assert granted.status_code == 200 and granted.json()["forwards"][0]["external-ip"] == "1.2.3.30"
        assert (await client.get("/healthz")).json()["gateways-alive"] == ["gw0", "gw1"]
    assert sample("bwvisu_keyhole_refusals_total", reason="not-authentic") == refusals + 1
    assert sample("bwvisu_keyhole_grants_total") == grants + 1


async def test_http_edge_caps_bodies_and_counts_unauthenticated_refusals(world: World) -> None:
    import httpx

    from bwvisu_common.keyhole_client import SIGNATURE_HEADER, TIMESTAMP_HEADER

    await world.job("j1")
    app = create_app(world.handlers, world.health, max_body=4096)
    path, ts = PATH_TEMPLATE.format(job_id="j1"), str(int(time.time()))
    big = b"{" + b" " * 5000 + b"}"
    headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(TOKEN, "POST", path, ts, big)}

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):  # no Content-Length: counted as it arrives
            yield b" " * 1000

    before = await world.events.last_seq()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k") as client:
        assert (await client.post(path, content=big, headers=headers)).status_code == 413
        chunked = await client.post(path, content=chunks(), headers=headers)
        assert chunked.status_code == 413
        body = request_body(1, ["cn0"])
        odd = {TIMESTAMP_HEADER: b"\xb2", SIGNATURE_HEADER: b"00"}  # read back as "²" (latin-1)
        assert (await client.post(path, content=body, headers=odd)).status_code == 401
        health = (await client.get("/healthz")).json()
    assert health["refused-unauthenticated"] == {"body-too-large": 2, "bad-timestamp": 1}
    assert await world.events.last_seq() == before


async def test_a_flood_of_refusals_is_counted_but_logged_only_in_part(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    await world.job("j1")
    for _ in range(50):
        with pytest.raises(Refused):
            await world.ask("j1", token=b"guess" * 8)
    assert world.handlers.unauthenticated == {"bad-signature": 50}
    lines = [r for r in caplog.records if "unauthenticated" in r.getMessage()]
    assert len(lines) == 10 and "'j1'" in lines[0].getMessage()


async def test_the_jobs_own_refusals_are_recorded_once_and_never_for_a_replay(world: World) -> None:
    # A job's user holds its token: repeating a refused request must not grow the stream.
    await world.job("j1")
    for _ in range(5):
        with pytest.raises(Refused):
            await world.ask("j1", nodes=["cn1"])
    path, body, ts = PATH_TEMPLATE.format(job_id="j1"), request_body(9, ["cn0"]), str(int(time.time()))
    sig = sign(TOKEN, "POST", path, ts, body)
    for _ in range(5):
        with pytest.raises(Refused):
            await world.handlers.request_ports("j1", path, ts, sig, body)
    kinds = await world.kinds("j1")
    assert kinds.count("PortsRefused") == 2, kinds  # one per reason: strange nodes, too many ports


async def test_healthz_says_unavailable_once_the_process_is_not_sound(world: World) -> None:
    import httpx

    sound = True
    app = create_app(world.handlers, world.health, ready=lambda: sound)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k") as client:
        assert (await client.get("/healthz")).status_code == 200
        sound = False
        answer = await client.get("/healthz")
        assert answer.status_code == 503 and answer.json()["status"] == "unavailable"


async def test_a_replica_whose_view_is_behind_asks_the_stream_before_it_refuses() -> None:
    # Its read model stopped, as on a node cut off from the stream and just back: the job started
    # meanwhile. A refusal would end the job; the stream's word is that it runs.
    events, state = InMemoryEventStore(), InMemoryStateStore()
    health = GatewayHeartbeats()
    health.beat("gw0")
    behind = LiveJobs(events, state)  # never follows
    handlers = KeyholeHandlers(make_settings(), events, state, behind, health,
                               tuning=Tuning(start_wait=0.1, agent_timeout=0.1))
    world = World(events, state, health, ScriptedGatewayAgents(events), handlers)
    await world.job("late")
    with pytest.raises(NoCapacity):  # its view never shows the gateway's answer: not granted here
        await world.ask("late")
    assert "PortsRefused" not in await world.kinds("late")
    assert "PortsAssigned" in await world.kinds("late")
