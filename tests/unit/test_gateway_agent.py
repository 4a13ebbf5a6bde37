"""The gateway agent on in-memory stores, firewall and prober."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bwvisu_common import events as ev
from bwvisu_common.assignments import is_current
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.state_keys import grant_key, node_port_key, port_key
from gateway_agent.bootstrap import Agent, assemble
from gateway_agent.domain.history import wanted
from gateway_agent.domain.probing import Timing
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.gateway import Gateway
from tests.conditions import eventually
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.firewall import InMemoryFirewall
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore

IPS = {"cn0": "10.0.0.20", "cn1": "10.0.0.21"}
GW_IP = "10.0.0.30"


async def resolve(node: str) -> str:
    if node not in IPS:
        raise OSError(f"unknown host {node}")
    return IPS[node]


async def publish(subject: str, payload: bytes) -> None:
    raise AssertionError(f"no heartbeat expected here ({subject})")


@dataclass
class World:
    events: InMemoryEventStore
    state: InMemoryStateStore
    jobs: LiveJobs
    firewall: InMemoryFirewall
    prober: FakeProber
    agent: Agent

    async def running_job(self, job_id: str, nodes: list[str]) -> None:
        await self.events.append([ev.JobSubmitted(job_id=job_id, uid="alice", template_name="t"),
                                  ev.JobStarted(job_id=job_id, nodes=nodes)])

    async def assign(self, job_id: str, nodes: list[str], ports: list[tuple[int, int]],
                     gateway: str = "gw0") -> ev.PortsAssigned:
        forwards = [ev.Forward(internal_port=i, external_port=e) for i, e in ports]
        keys = [port_key(gateway, e) for _, e in ports] + [grant_key(job_id)]
        keys += [node_port_key(n, i) for n in nodes for i, _ in ports]
        assert await self.state.reserve(keys, job_id)
        event = ev.PortsAssigned(job_id=job_id, gateway=gateway, nodes=nodes, forwards=forwards)
        seq = await self.events.append([event])
        await self.agent.handlers.handle(seq, event)
        return event

    async def kinds(self, job_id: str) -> list[str]:
        return [type(e).__name__ for _, e in await self.events.read_job(job_id)]

    async def settle(self) -> None:
        """Until the read model holds every event appended so far."""
        last = await self.events.last_seq()
        await eventually(lambda: self.jobs.seq >= last, f"the read model reaches event {last}")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    events, state = InMemoryEventStore(), InMemoryStateStore()
    jobs = LiveJobs(events, state)
    task = asyncio.create_task(jobs.run())
    firewall, prober = InMemoryFirewall(), FakeProber()
    agent = assemble(Gateway(name="gw0", own_ip=GW_IP, events=events, state=state, jobs=jobs,
                             firewall=firewall, prober=prober, resolve=resolve,
                             timing=Timing(fast_probe=0.0, slow_probe=0.0)), publish)
    yield World(events, state, jobs, firewall, prober, agent)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_assignment_is_checked_forwarded_and_confirmed(world: World) -> None:
    await world.running_job("j1", ["cn0", "cn1"])
    await world.assign("j1", ["cn0", "cn1"], [(21000, 20000)])
    assert await world.firewall.rules() == [ForwardRule(job_id="j1", external_port=20000,
                                                        target_ip="10.0.0.20", internal_port=21000,
                                                        gateway_ip=GW_IP)]
    assert (await world.kinds("j1"))[-1] == "PortsForwarded"
    # The internal port was free on BOTH nodes and the external one here.
    assert set(world.prober.probed) == {("10.0.0.20", 21000), ("10.0.0.21", 21000), (GW_IP, 20000)}


async def test_a_port_in_use_on_any_node_is_unavailable(world: World) -> None:
    world.prober.open_ports = {("10.0.0.21", 21000)}
    await world.running_job("j1", ["cn0", "cn1"])
    await world.assign("j1", ["cn0", "cn1"], [(21000, 20000)])
    assert await world.firewall.rules() == []
    _, last = (await world.events.read_job("j1"))[-1]
    assert isinstance(last, ev.PortsUnavailable) and "10.0.0.21:21000" in last.reason


async def test_an_external_port_forwarded_for_another_job_is_unavailable(world: World) -> None:
    await world.firewall.install([ForwardRule(job_id="old", external_port=20000, target_ip="10.0.0.20",
                                              internal_port=1, gateway_ip=GW_IP)])
    await world.running_job("j1", ["cn0"])
    await world.assign("j1", ["cn0"], [(21000, 20000)])
    assert (await world.kinds("j1"))[-1] == "PortsUnavailable"


async def test_a_redelivered_or_superseded_assignment_is_not_acted_on(world: World) -> None:
    await world.running_job("j1", ["cn0"])
    first = await world.assign("j1", ["cn0"], [(21000, 20000)])
    await world.agent.handlers.handle(99, first)  # redelivered
    assert (await world.kinds("j1")).count("PortsForwarded") == 1
    history = [first, ev.PortsUnavailable(job_id="j1", gateway="gw0", forwards=first.forwards)]
    assert not is_current(history, first.event_id)
    assert is_current(history[:1], first.event_id)


async def test_probes_report_open_then_closed(world: World) -> None:
    await world.running_job("j1", ["cn0"])
    await world.assign("j1", ["cn0"], [(21000, 20000)])
    await world.settle()
    await world.agent.probes.probe_once()
    assert "PortOpen" not in await world.kinds("j1")
    world.prober.open_ports.add(("10.0.0.20", 21000))
    await world.agent.probes.probe_once()
    assert (await world.jobs.wait_for("j1", lambda j: j.state == JobState.AVAILABLE, 1)) is not None
    await world.agent.probes.probe_once()
    assert (await world.kinds("j1")).count("PortOpen") == 1  # reported once
    world.prober.open_ports.clear()
    await world.agent.probes.probe_once()
    assert (await world.jobs.wait_for("j1", lambda j: j.state == JobState.RUNNING, 1)) is not None
    assert (await world.kinds("j1"))[-1] == "PortClosed"


async def test_job_end_removes_rules_and_releases_reservations(world: World) -> None:
    await world.running_job("j1", ["cn0"])
    await world.state.reserve([port_key("gw0", 20500)], "someone-else")
    await world.assign("j1", ["cn0"], [(21000, 20000)])
    ended = ev.JobEnded(job_id="j1", slurm_state="CANCELLED")
    await world.agent.handlers.handle(await world.events.append([ended]), ended)
    assert await world.firewall.rules() == []
    assert await world.state.reservations() == {port_key("gw0", 20500): "someone-else"}
    assert (await world.kinds("j1"))[-1] == "ForwardsRemoved"


async def test_reconcile_restores_deleted_rules_and_drops_ended_and_unknown_jobs(world: World) -> None:
    for job in ("live", "gone"):
        await world.running_job(job, ["cn0"])
    await world.assign("live", ["cn0"], [(21000, 20000)])
    await world.assign("gone", ["cn0"], [(21001, 20001)])
    stray = ForwardRule(job_id="stranger", external_port=20002, target_ip="10.0.0.20", internal_port=1,
                        gateway_ip=GW_IP)
    await world.firewall.install([stray])
    # While the agent was down: a rule deleted by hand, a job ended.
    await world.firewall.remove_jobs(["live"])
    await world.events.append([ev.JobEnded(job_id="gone", slurm_state="COMPLETED")])
    await world.settle()
    await world.agent.reconciler.reconcile()
    assert [r.job_id for r in await world.firewall.rules()] == ["live"]
    held = await world.state.reservations()
    assert set(held.values()) == {"live"}
    assert (await world.kinds("gone"))[-1] == "ForwardsRemoved"
    assert await world.kinds("stranger") == []  # no event made up for an unknown job


def test_wanted_follows_the_log() -> None:
    fwd = [ev.Forward(internal_port=1, external_port=2)]
    a = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=fwd)
    f = ev.PortsForwarded(job_id="j", gateway="gw0", forwards=fwd)
    assert wanted([a, f], "gw0") is not None
    assert wanted([a, f], "gw1") is None
    assert wanted([a], "gw0") is None
    assert wanted([a, f, ev.JobCancelRequested(job_id="j")], "gw0") is None


async def test_a_gateway_back_from_the_dead_removes_rules_of_jobs_moved_away_and_takes_new_work(
        world: World) -> None:
    await world.running_job("j1", ["cn0"])
    await world.assign("j1", ["cn0"], [(21000, 20000)])
    # While gw0 was gone, the job's forwards moved to gw1 and its application answered there.
    moved = [ev.Forward(internal_port=21000, external_port=20009)]
    await world.events.append([ev.PortsAssigned(job_id="j1", gateway="gw1", nodes=["cn0"], forwards=moved,
                                                moved_from="gw0")])
    await world.events.append([ev.PortsForwarded(job_id="j1", gateway="gw1", forwards=moved)])
    await world.events.append([ev.PortOpen(job_id="j1", external_port=20009, gateway="gw1")])
    await world.settle()
    await world.agent.reconciler.reconcile()
    assert await world.firewall.rules() == []
    assert (await world.kinds("j1"))[-1] == "ForwardsRemoved"
    await world.settle()
    job = world.jobs.get("j1")
    assert job is not None and job.state == JobState.AVAILABLE
    assert [(s.gateway, s.external_port) for s in job.services] == [("gw1", 20009)]
    await world.running_job("j2", ["cn0"])
    await world.assign("j2", ["cn0"], [(21001, 20001)])
    assert [r.job_id for r in await world.firewall.rules()] == ["j2"]


async def test_forwards_moved_here_are_installed_while_the_application_listens(world: World) -> None:
    await world.running_job("j1", ["cn0"])
    world.prober.open_ports = {("10.0.0.20", 21000)}  # the application, up since its first gateway
    forwards = [ev.Forward(internal_port=21000, external_port=20000)]
    await world.events.append([ev.PortsAssigned(job_id="j1", gateway="gw1", nodes=["cn0"],
                                                forwards=forwards)])
    await world.events.append([ev.PortsForwarded(job_id="j1", gateway="gw1", forwards=forwards)])
    move = ev.PortsAssigned(job_id="j1", gateway="gw0", nodes=["cn0"], forwards=forwards, moved_from="gw1")
    await world.agent.handlers.handle(await world.events.append([move]), move)
    assert [r.job_id for r in await world.firewall.rules()] == ["j1"]
    assert (await world.kinds("j1"))[-1] == "PortsForwarded"


async def test_an_assignment_given_up_on_while_installing_is_taken_out_again(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """keyhole-api's PortsUnavailable goes in while iptables runs: the late confirmation must not
    stand beside it (its ports were given back), so the rules come out and nothing is confirmed."""
    await world.running_job("j1", ["cn0"])
    install = world.firewall.install

    async def given_up_meanwhile(rules):  # type: ignore[no-untyped-def]
        await world.events.append([ev.PortsUnavailable(job_id="j1", gateway="gw0", forwards=[],
                                                       reason="gateway gw0 did not answer in time")])
        return await install(rules)

    monkeypatch.setattr(world.firewall, "install", given_up_meanwhile)
    await world.assign("j1", ["cn0"], [(21000, 20000)])
    assert await world.firewall.rules() == []
    assert not world.agent.gateway.table.holds("j1")
    assert (await world.kinds("j1"))[-2:] == ["PortsAssigned", "PortsUnavailable"]


async def test_an_unrelated_event_while_installing_does_not_stop_the_confirmation(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    await world.running_job("j1", ["cn0"])
    install = world.firewall.install

    async def client_meanwhile(rules):  # type: ignore[no-untyped-def]
        await world.events.append([ev.ClientAddressAllowed(job_id="j1", address="192.0.2.7")])
        return await install(rules)

    monkeypatch.setattr(world.firewall, "install", client_meanwhile)
    await world.assign("j1", ["cn0"], [(21000, 20000)])
    assert len(await world.firewall.rules()) == 1
    assert (await world.kinds("j1"))[-1] == "PortsForwarded"


async def test_rules_left_by_a_confirmation_that_failed_come_out_when_the_assignment_comes_again(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    await world.running_job("j1", ["cn0"])
    append = world.events.append

    async def confirmation_lost(events, expected_version=None):  # type: ignore[no-untyped-def]
        if isinstance(events[0], ev.PortsForwarded):
            raise DependencyUnavailable("JetStream did not store the events")
        return await append(events, expected_version)

    monkeypatch.setattr(world.events, "append", confirmation_lost)
    with pytest.raises(DependencyUnavailable):
        await world.assign("j1", ["cn0"], [(21000, 20000)])
    monkeypatch.undo()
    assert len(await world.firewall.rules()) == 1  # installed, confirmed by nobody
    # keyhole-api gives up on it; the assignment comes again (it was not acked).
    await world.events.append([ev.PortsUnavailable(job_id="j1", gateway="gw0", forwards=[],
                                                   reason="no answer")])
    numbered = await world.events.read_job("j1")
    (seq, assigned), = [(s, e) for s, e in numbered if isinstance(e, ev.PortsAssigned)]
    await world.agent.handlers.handle(seq, assigned)
    assert await world.firewall.rules() == []
    assert not world.agent.gateway.table.holds("j1")
