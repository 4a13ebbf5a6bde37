"""The gateway agent refuses assignments that do not fit the job, and limits forwards to clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from bwvisu_common import events as ev
from bwvisu_common.live_jobs import LiveJobs
from gateway_agent.bootstrap import assemble
from gateway_agent.domain.checks import Limits, refusal
from gateway_agent.domain.history import allowed_addresses
from gateway_agent.domain.probing import Timing
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.gateway import Gateway
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.firewall import InMemoryFirewall
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore
from tests.unit.test_gateway_agent import GW_IP, World, publish, resolve

EXTERNAL_IP = "192.0.2.30"
LIMITS = Limits(port_min=20000, port_max=20999, max_forwards=2)


@pytest.fixture
async def make_world() -> AsyncIterator[Callable[[bool], World]]:
    tasks: list[asyncio.Task[None]] = []

    def build(restrict: bool = False) -> World:
        events, state = InMemoryEventStore(), InMemoryStateStore()
        jobs = LiveJobs(events, state)
        tasks.append(asyncio.create_task(jobs.run()))
        firewall, prober = InMemoryFirewall(), FakeProber()
        agent = assemble(Gateway(name="gw0", own_ip=GW_IP, events=events, state=state, jobs=jobs,
                                 firewall=firewall, prober=prober, resolve=resolve,
                                 timing=Timing(fast_probe=0.0, slow_probe=0.0), external_ip=EXTERNAL_IP,
                                 limits=LIMITS, restrict_sources=restrict), publish)
        return World(events, state, jobs, firewall, prober, agent)

    yield build
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def last_event(world: World, job_id: str) -> ev.Event:
    return (await world.events.read_job(job_id))[-1][1]


async def allow(world: World, job_id: str, address: str) -> None:
    event = ev.ClientAddressAllowed(job_id=job_id, address=address)
    await world.agent.handlers.handle(await world.events.append([event]), event)


def rule(port: int = 20000, source: str = "") -> ForwardRule:
    return ForwardRule(job_id="j1", external_port=port, target_ip="10.0.0.20", internal_port=20500,
                       gateway_ip=EXTERNAL_IP, source=source)


@pytest.mark.parametrize(("nodes", "ports", "why"), [
    (["cn1"], [(20500, 20000)], "nodes not the job's: 'cn1'"),
    (["cn0", "evil\n-A INPUT"], [(20500, 20000)], "nodes not the job's: 'evil\\n-A INPUT'"),
    (["cn0", "cn0"], [(20500, 20000)], "a node twice"),
    (["cn0"], [(20500, 22)], "port(s) 22 outside the port range 20000-20999"),
    (["cn0"], [(3306, 20000)], "port(s) 3306 outside"),
    (["cn0"], [(20500, 20000), (20501, 20001), (20502, 20002)], "3 forwards, at most 2"),
    (["cn0"], [], "no ports"),
])
async def test_a_forged_assignment_is_refused_and_nothing_installed(
        make_world: Callable[[bool], World], nodes: list[str], ports: list[tuple[int, int]],
        why: str) -> None:
    world = make_world(False)
    await world.running_job("j1", ["cn0"])
    await world.assign("j1", nodes, ports)
    assert await world.firewall.rules() == []
    last = await last_event(world, "j1")
    assert isinstance(last, ev.PortsUnavailable) and last.reason.startswith("refused: ")
    assert why in last.reason
    assert world.prober.probed == []  # not even probed: nothing is asked of a stranger host


async def test_an_assignment_before_the_job_started_is_refused(make_world: Callable[[bool], World]) -> None:
    world = make_world(False)
    await world.events.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="t")])
    await world.assign("j1", ["cn0"], [(20500, 20000)])
    assert await world.firewall.rules() == []
    assert "has not started" in getattr(await last_event(world, "j1"), "reason", "")


async def test_a_fitting_assignment_is_bound_to_the_gateways_external_address(
        make_world: Callable[[bool], World]) -> None:
    world = make_world(False)
    await world.running_job("j1", ["cn0"])
    await world.assign("j1", ["cn0"], [(20500, 20000)])
    assert await world.firewall.rules() == [rule()]
    await allow(world, "j1", "198.51.100.7")  # without the option, addresses change nothing
    assert await world.firewall.rules() == [rule()]


async def test_reconcile_takes_out_forwards_the_checks_refuse(make_world: Callable[[bool], World]) -> None:
    world = make_world(False)
    await world.running_job("j1", ["cn0"])
    assigned = ev.PortsAssigned(job_id="j1", gateway="gw0", nodes=["cn0"],
                                forwards=[ev.Forward(internal_port=20500, external_port=22)])
    # A forward that got into the log and the chains past the checks (an older agent, say).
    await world.events.append([assigned, ev.PortsForwarded(job_id="j1", gateway="gw0",
                                                           forwards=assigned.forwards)])
    await world.firewall.install([replace(rule(), external_port=22)])
    await world.settle()
    await world.agent.reconciler.reconcile()
    assert await world.firewall.rules() == []


async def test_restricted_forwards_follow_the_owners_client_addresses(
        make_world: Callable[[bool], World]) -> None:
    world = make_world(True)
    await world.running_job("j1", ["cn0"])
    await world.assign("j1", ["cn0"], [(20500, 20000)])
    assert (await world.kinds("j1"))[-1] == "PortsForwarded"
    assert await world.firewall.rules() == []  # nobody connected yet: nothing reaches the app
    await allow(world, "j1", "198.51.100.7")
    await allow(world, "j1", "198.51.100.7")
    await allow(world, "j1", "203.0.113.9")
    await allow(world, "j1", "not-an-address")
    assert await world.firewall.rules() == [rule(source="198.51.100.7"), rule(source="203.0.113.9")]
    assert world.agent.gateway.forward_count == 1
    # Restarted: the chains were lost; reconcile rebuilds both from the log.
    await world.firewall.remove_jobs(["j1"])
    await world.settle()
    await world.agent.reconciler.reconcile()
    assert await world.firewall.rules() == [rule(source="198.51.100.7"), rule(source="203.0.113.9")]
    ended = ev.JobEnded(job_id="j1", slurm_state="COMPLETED")
    await world.agent.handlers.handle(await world.events.append([ended]), ended)
    assert await world.firewall.rules() == []


async def test_an_address_allowed_before_the_ports_is_forwarded_at_once(
        make_world: Callable[[bool], World]) -> None:
    world = make_world(True)
    await world.running_job("j1", ["cn0"])
    await allow(world, "j1", "198.51.100.7")
    assert await world.firewall.rules() == []
    await world.assign("j1", ["cn0"], [(20500, 20000)])
    assert await world.firewall.rules() == [rule(source="198.51.100.7")]


def test_the_checks_and_the_addresses_are_pure() -> None:
    started = ev.JobStarted(job_id="j", nodes=["cn0", "cn1"])
    fwd = [ev.Forward(internal_port=20001, external_port=20002)]
    suffixed = Limits(port_min=20000, port_max=20999, node_suffix=".ib")
    assert refusal(["cn0.ib", "cn1.ib"], fwd, [started], suffixed) is None
    assert refusal(["cn0"], fwd, [started], suffixed) is not None
    assert refusal(["cn0"], fwd + fwd, [started], LIMITS) == "an external port twice"
    history = [ev.ClientAddressAllowed(job_id="j", address="192.0.2.1"),
               ev.ClientAddressAllowed(job_id="j", address="192.0.2.1")]
    assert allowed_addresses(history) == ["192.0.2.1"]
    assert allowed_addresses([*history, ev.JobEnded(job_id="j", slurm_state="COMPLETED")]) == []


@pytest.mark.timeout(10)  # refused before it connects to anything
async def test_a_gateway_whose_external_address_is_not_ipv4_does_not_start() -> None:
    from contextlib import AsyncExitStack

    from bwvisu_common.errors import ConfigError
    from bwvisu_common.settings import parse_settings
    from gateway_agent.bootstrap import build

    config = (b'{"bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.2"}], "gateway-nodes": '
              b'[{"name": "gw0", "internal-ip": "10.0.0.30", "external-ip": "gw0.example.org"}]}')
    async with AsyncExitStack() as stack:
        with pytest.raises(ConfigError, match=r"gateway-nodes\[gw0\].external-ip: 'gw0.example.org'"):
            await build(parse_settings(config, "bwvisu.json"), "gw0", stack)
