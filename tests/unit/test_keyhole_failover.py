"""keyhole-api's gateway failover: what moves where (pure), and the move on in-memory stores."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from bwvisu_common import events as ev
from bwvisu_common.heartbeats import GatewayHeartbeats
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.read_model import fold
from bwvisu_common.state_keys import grant_key, node_port_key, port_key
from keyhole_api.domain.failover import (
    decide_move,
    last_move,
    pick_moved,
    still_dead,
    stranded,
    unanswered_moves,
)
from keyhole_api.failover import UNANSWERED_AFTER, GatewayFailover
from tests.conditions import eventually
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.gateway_agents import ScriptedGatewayAgents
from tests.fakes.state_store import InMemoryStateStore
from tests.unit.test_keyhole_api import make_settings

FWD = [ev.Forward(internal_port=20050, external_port=20010)]


def on_gw1(job_id: str = "j") -> list[ev.Event]:
    """A job available through gw1."""
    return [ev.JobSubmitted(job_id=job_id, uid="alice", template_name="t"),
            ev.JobStarted(job_id=job_id, nodes=["cn0"]),
            ev.PortsAssigned(job_id=job_id, gateway="gw1", nodes=["cn0"], forwards=FWD),
            ev.PortsForwarded(job_id=job_id, gateway="gw1", forwards=FWD),
            ev.PortOpen(job_id=job_id, external_port=20010, gateway="gw1")]


def numbered(events: list[ev.Event]) -> list[tuple[int, ev.Event]]:
    return list(enumerate(events, 1))


def test_forwards_on_a_dead_gateway_move_keeping_their_internal_ports() -> None:
    move = decide_move(numbered(on_gw1()), alive=["gw0"])
    assert move is not None and move.from_gateway == "gw1" and move.internal_ports == [20050]
    assert move.nodes == ["cn0"] and move.expected_seq == 5
    assert decide_move(numbered(on_gw1()), alive=["gw0", "gw1"]) is None


def test_nothing_moves_once_moved_ended_or_never_forwarded() -> None:
    moving = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD, moved_from="gw1")
    assert decide_move(numbered([*on_gw1(), moving]), alive=["gw0"]) is None  # under way
    done = [*on_gw1(), moving, ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD),
            ev.ForwardsRemoved(job_id="j", gateway="gw1")]  # gw1's late word changes nothing
    assert decide_move(numbered(done), alive=["gw0"]) is None
    assert decide_move(numbered([*on_gw1(), ev.JobEnded(job_id="j", slurm_state="COMPLETED")]),
                       alive=["gw0"]) is None
    assert decide_move(numbered(on_gw1()[:3]), alive=["gw0"]) is None  # nothing forwarded yet


def test_a_move_refused_by_its_new_gateway_is_tried_again() -> None:
    moving = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD, moved_from="gw1")
    refused = ev.PortsUnavailable(job_id="j", gateway="gw0", forwards=FWD, reason="in use")
    move = decide_move(numbered([*on_gw1(), moving, refused]), alive=["gw0"])
    assert move is not None and move.from_gateway == "gw1" and move.expected_seq == 7


def test_stranded_jobs_need_a_dead_gateway_and_a_live_one() -> None:
    job = fold(numbered(on_gw1()))
    assert job is not None and job.state == JobState.AVAILABLE
    assert stranded([job], alive=["gw0"], dead=["gw1"]) == ["j"]
    assert stranded([job], alive=["gw0", "gw1"], dead=[]) == []
    assert stranded([job], alive=[], dead=["gw0", "gw1"]) == []  # nowhere to go


def test_a_gateway_is_dead_once_not_alive_for_a_while_not_for_one_missed_answer() -> None:
    since, dead = still_dead(["gw0", "gw1"], ["gw0"], {}, now=10.0, confirm=1.5)
    assert since == {"gw1": 10.0} and dead == set()  # forgotten a moment ago: not yet
    since, dead = still_dead(["gw0", "gw1"], ["gw0"], since, now=11.6, confirm=1.5)
    assert dead == {"gw1"}
    assert still_dead(["gw0", "gw1"], ["gw0", "gw1"], since, now=12.0, confirm=1.5) == ({}, set())


def test_silence_from_every_gateway_moves_nothing_and_a_reconnect_starts_the_count_afresh() -> None:
    # keyhole-api's own NATS connection gone: no gateway beats, none is counted as dead.
    since, dead = still_dead(["gw0", "gw1"], [], {}, now=10.0, confirm=1.5)
    assert (since, dead) == ({}, set())
    # Back, and gw0 beats first: gw1 gets its `confirm` seconds from now, not from the outage.
    since, dead = still_dead(["gw0", "gw1"], ["gw0"], since, now=20.0, confirm=1.5)
    assert since == {"gw1": 20.0} and dead == set()


def test_a_moved_forward_gets_a_free_external_port_and_static_keeps_it_equal() -> None:
    held = {port_key("gw0", p): "other" for p in range(20000, 20010)}
    picked = pick_moved("gw0", [20050], held=held, port_range=(20000, 20010), static=False,
                        rng=random.Random(1))
    assert picked is not None and picked.forwards == [ev.Forward(internal_port=20050, external_port=20010)]
    assert picked.keys == [port_key("gw0", 20010)]
    assert pick_moved("gw0", [20050, 20051], held=held, port_range=(20000, 20010), static=False) is None
    static = pick_moved("gw0", [20050], held={}, port_range=(20000, 20099), static=True)
    assert static is not None and static.forwards[0].external_port == 20050
    assert pick_moved("gw0", [20005], held=held, port_range=(20000, 20099), static=True) is None


@dataclass
class World:
    events: InMemoryEventStore
    state: InMemoryStateStore
    jobs: LiveJobs
    health: GatewayHeartbeats
    clock: list[float]
    agents: ScriptedGatewayAgents


@contextlib.asynccontextmanager
async def running(events: InMemoryEventStore) -> AsyncIterator[World]:
    """A world on `events`: its read model follows them, and scripted agents answer assignments."""
    state = InMemoryStateStore()
    clock = [100.0]
    health = GatewayHeartbeats(timeout=5.0, clock=lambda: clock[0])
    jobs = LiveJobs(events, state)
    agents = ScriptedGatewayAgents(events)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(jobs.run()),
             asyncio.create_task(events.consume("agents", agents.handle, stop))]
    try:
        yield World(events, state, jobs, health, clock, agents)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with running(InMemoryEventStore()) as w:
        yield w


async def test_a_dead_gateways_job_moves_once_even_with_several_replicas(world: World) -> None:
    for event in on_gw1():
        await world.events.append([event])
    held = [port_key("gw1", 20010), node_port_key("cn0", 20050), grant_key("j")]
    assert await world.state.reserve(held, "j")
    world.health.beat("gw1")
    world.health.beat("gw0")
    last = await world.events.last_seq()
    await eventually(lambda: world.jobs.seq >= last, "the read model catches up")
    replicas = [GatewayFailover(make_settings(), world.events, world.state, world.jobs, world.health,
                                clock=lambda: world.clock[0])
                for _ in range(3)]
    assert [await r.move_once() for r in replicas] == [0, 0, 0]  # both alive: nothing to move
    world.clock[0] += 6.0
    world.health.beat("gw0")  # gw1 fell silent
    assert [await r.move_once() for r in replicas] == [0, 0, 0]  # not yet confirmed dead
    world.clock[0] += 2.0
    world.health.beat("gw0")
    moves = await asyncio.gather(*(r.move_once() for r in replicas))
    assert sum(moves) == 1
    job = await world.jobs.wait_for("j", lambda j: bool(j.services) and j.services[0].gateway == "gw0", 2.0)
    assert job is not None and [s.internal_port for s in job.services] == [20050]
    assigned = [e for _, e in await world.events.read_job("j") if isinstance(e, ev.PortsAssigned)]
    assert [(a.gateway, a.moved_from) for a in assigned] == [("gw1", ""), ("gw0", "gw1")]
    reservations = await world.state.reservations()
    assert set(reservations) == {port_key("gw0", job.services[0].external_port), node_port_key("cn0", 20050),
                                 grant_key("j")}
    assert set(reservations.values()) == {"j"}
    assert [await r.move_once() for r in replicas] == [0, 0, 0]  # moved: nothing more to do


class RacedEventStore(InMemoryEventStore):
    """Another replica's move goes in just before this one's conditional append."""

    async def append(self, events, expected_version=None):  # type: ignore[no-untyped-def]
        if expected_version is not None and isinstance(events[0], ev.PortsAssigned):
            other = ev.PortsAssigned(job_id=events[0].job_id, gateway="gw0", nodes=["cn0"],
                                     forwards=[ev.Forward(internal_port=20050, external_port=20099)],
                                     moved_from="gw1")
            await super().append([other])
        return await super().append(events, expected_version)


async def test_a_replica_that_loses_the_race_appends_nothing_and_gives_its_ports_back() -> None:
    events, state = RacedEventStore(), InMemoryStateStore()
    for event in on_gw1():
        await events.append([event])
    assert await state.reserve([port_key("gw1", 20010), node_port_key("cn0", 20050)], "j")
    clock = [100.0]
    health = GatewayHeartbeats(timeout=5.0, clock=lambda: clock[0])
    health.beat("gw0")
    jobs = LiveJobs(events, state)
    await jobs.catch_up()
    failover = GatewayFailover(make_settings(), events, state, jobs, health, clock=lambda: clock[0])
    assert await failover.move_once() == 0  # gw1 not alive: since now
    clock[0] += 2.0
    health.beat("gw0")
    assert await failover.move_once() == 0  # dead now, but the race is lost
    assigned = [e for _, e in await events.read_job("j") if isinstance(e, ev.PortsAssigned)]
    assert [a.forwards[0].external_port for a in assigned] == [20010, 20099]  # only the winner's move
    assert await state.reservations() == {port_key("gw1", 20010): "j", node_port_key("cn0", 20050): "j"}


async def stranded_on_gw1(world: World) -> None:
    """The job of on_gw1() holds its ports, and gw1 has been silent long enough to be dead."""
    for event in on_gw1():
        await world.events.append([event])
    assert await world.state.reserve([port_key("gw1", 20010), node_port_key("cn0", 20050)], "j")
    last = await world.events.last_seq()
    await eventually(lambda: world.jobs.seq >= last, "the read model catches up")
    world.health.beat("gw0")


def failover_of(world: World, events: InMemoryEventStore | None = None) -> GatewayFailover:
    return GatewayFailover(make_settings(), events or world.events, world.state, world.jobs, world.health,
                           clock=lambda: world.clock[0], answer_timeout=2.0)


async def test_a_move_its_new_gateway_never_answers_is_given_up_and_tried_again(world: World) -> None:
    await stranded_on_gw1(world)
    world.agents.silent.add("gw0")
    failover = failover_of(world)
    assert await failover.move_once() == 0  # gw1 not alive: since now
    world.clock[0] += 2.0
    world.health.beat("gw0")
    assert await failover.move_once() == 0  # moved to gw0, which stays silent
    history = [e for _, e in await world.events.read_job("j")]
    assert isinstance(history[-1], ev.PortsUnavailable) and history[-1].gateway == "gw0"
    # gw0's ports are free again; gw1's stay with the job until its forwards are somewhere else.
    assert await world.state.reservations() == {port_key("gw1", 20010): "j", node_port_key("cn0", 20050): "j"}
    assert "gw0" not in world.health.alive()  # dead to the next round until it beats again
    world.agents.silent.clear()
    world.health.beat("gw0")
    last = await world.events.last_seq()
    await eventually(lambda: world.jobs.seq >= last, "the read model catches up")
    assert await failover.move_once() == 1  # not held back until RETRY_AFTER
    job = world.jobs.get("j")
    assert job is not None and [s.gateway for s in job.services] == ["gw0"]


class AnswerLostEventStore(InMemoryEventStore):
    """The first conditional append fails as if its answer was lost; `stored`: after storing it."""

    def __init__(self, stored: bool) -> None:
        super().__init__()
        self.stored = stored
        self.failed = False

    async def append(self, events, expected_version=None):  # type: ignore[no-untyped-def]
        if expected_version is None or self.failed:
            return await super().append(events, expected_version)
        self.failed = True
        if self.stored:
            await super().append(events, expected_version)
        raise TimeoutError("no answer from the stream")


@pytest.mark.parametrize("stored", [True, False])
async def test_a_move_whose_append_answer_is_lost_keeps_the_ports_it_needs(stored: bool) -> None:
    async with running(AnswerLostEventStore(stored)) as world:
        await stranded_on_gw1(world)
        failover = failover_of(world)
        assert await failover.move_once() == 0
        world.clock[0] += 2.0
        world.health.beat("gw0")
        assert await failover.move_once() == (1 if stored else 0)
        held = await world.state.reservations()
        job = world.jobs.get("j")
        assert job is not None
        if stored:  # the move went in: it keeps its new ports, and the dead gateway's are free
            assert [s.gateway for s in job.services] == ["gw0"]
            moved_to = port_key("gw0", job.services[0].external_port)
            assert held == {moved_to: "j", node_port_key("cn0", 20050): "j"}
        else:  # nothing went in: nothing is held for it, and the next round tries again
            assert held == {port_key("gw1", 20010): "j", node_port_key("cn0", 20050): "j"}
            assert await failover.move_once() == 1


def test_a_move_that_awaits_its_answer_for_long_is_found_and_nothing_else_is() -> None:
    moving = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD, moved_from="gw1")
    job = fold(numbered([*on_gw1(), moving]))
    assert job is not None and job.updated_at is not None
    later = job.updated_at + timedelta(seconds=31)
    assert unanswered_moves([job], later, patience=30) == ["j"]
    assert unanswered_moves([job], job.updated_at + timedelta(seconds=5), patience=30) == []
    answered = fold(numbered([*on_gw1(), moving, ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD)]))
    first = fold(numbered(on_gw1()[:3]))  # a first grant: its job's keyhole client waits for it
    assert unanswered_moves([v for v in (answered, first) if v is not None], later, patience=30) == []
    assert last_move([*on_gw1(), moving]) == moving
    assert last_move([*on_gw1(), moving, ev.PortsUnavailable(job_id="j", gateway="gw0", forwards=FWD,
                                                             reason="x")]) is None
    assert last_move(on_gw1()) is None


async def test_a_stored_move_nobody_waits_for_is_given_up_and_the_job_moves_again(world: World) -> None:
    # A replica appended the move to gw0 and died (or lost the append's answer) before it waited
    # for gw0's answer, and gw0 never answered: nothing else would ever move the job again.
    await stranded_on_gw1(world)
    world.agents.silent.add("gw0")
    moved_to = ev.Forward(internal_port=20050, external_port=20077)
    assert await world.state.reserve([port_key("gw0", 20077)], "j")
    await world.events.append([ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=[moved_to],
                                                moved_from="gw1")])
    last = await world.events.last_seq()
    await eventually(lambda: world.jobs.seq >= last, "the read model catches up")
    job = world.jobs.get("j")
    assert job is not None and job.updated_at is not None
    wall = [job.updated_at + timedelta(seconds=5)]
    failover = GatewayFailover(make_settings(), world.events, world.state, world.jobs, world.health,
                               clock=lambda: world.clock[0], answer_timeout=2.0, wall_clock=lambda: wall[0])
    assert await failover.move_once() == 0
    world.clock[0] += 2.0
    world.health.beat("gw0")
    assert await failover.move_once() == 0  # gw1 dead, but a move to gw0 is under way: not yet
    assert not isinstance((await world.events.read_job("j"))[-1][1], ev.PortsUnavailable)
    wall[0] += timedelta(seconds=UNANSWERED_AFTER)
    world.agents.silent.clear()
    assert await failover.move_once() == 0  # given up on now; moved again in the next round
    history = [e for _, e in await world.events.read_job("j")]
    assert isinstance(history[-1], ev.PortsUnavailable) and history[-1].gateway == "gw0"
    # gw0's port stays the job's until it ends: another replica may have moved it there again since.
    assert await world.state.reservations() == {port_key("gw1", 20010): "j", node_port_key("cn0", 20050): "j",
                                                 port_key("gw0", 20077): "j"}
    assert "gw0" not in world.health.alive()  # dead to the next round until it beats again
    world.health.beat("gw0")
    last = await world.events.last_seq()
    await eventually(lambda: world.jobs.seq >= last, "the read model catches up")
    assert await failover.move_once() == 1
    job = world.jobs.get("j")
    assert job is not None and [s.gateway for s in job.services] == ["gw0"]
