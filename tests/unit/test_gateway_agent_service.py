"""The gateway agent's process: reconciles at start, runs its loops, stops on `stop` or a dead loop."""

from __future__ import annotations

import argparse
import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bwvisu_cli.servers import free_port
from bwvisu_common import events as ev
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.ports import EventStore
from bwvisu_common.service_process import TaskDied
from bwvisu_common.settings import Settings, parse_settings
from gateway_agent import service
from gateway_agent.bootstrap import Agent, assemble
from gateway_agent.domain.probing import Timing
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.gateway import Gateway
from tests.conditions import eventually
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.firewall import InMemoryFirewall
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore
from tests.unit.test_gateway_agent import GW_IP, resolve

FORWARD = ev.Forward(internal_port=21000, external_port=20000)
RULE = ForwardRule(job_id="j1", external_port=20000, target_ip="10.0.0.20", internal_port=21000,
                   gateway_ip=GW_IP)


class _Beats:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def publish(self, subject: str, payload: bytes) -> None:
        self.sent.append((subject, json.loads(payload)))
        self.arrived.set()


async def _forwarded_job(events: EventStore) -> None:
    """A job the log says gw0 forwards (as before a restart that lost the chains)."""
    assigned = ev.PortsAssigned(job_id="j1", gateway="gw0", nodes=["cn0"], forwards=[FORWARD])
    await events.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"),
                         ev.JobStarted(job_id="j1", nodes=["cn0"]), assigned,
                         ev.PortsForwarded(job_id="j1", gateway="gw0", forwards=[FORWARD])])


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> tuple[Agent, InMemoryFirewall, _Beats]:
    events, state = InMemoryEventStore(), InMemoryStateStore()
    firewall, beats = InMemoryFirewall(), _Beats()
    built = assemble(Gateway(name="gw0", own_ip=GW_IP, events=events, state=state,
                             jobs=LiveJobs(events, state), firewall=firewall, prober=FakeProber(),
                             resolve=resolve, timing=Timing(fast_probe=0.01, slow_probe=0.01)),
                     beats.publish)

    async def build(_settings: Settings, gateway: str, _stack: AsyncExitStack) -> Agent:
        assert gateway == "gw0"
        return built

    monkeypatch.setattr(service, "build", build)
    return built, firewall, beats


def _args() -> argparse.Namespace:
    return argparse.Namespace(config=None, gateway="gw0")


# Read for where /metrics listens only: `build` is replaced by one that assembles the agent around fakes.
SETTINGS = parse_settings(b'{"bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.2"}], '
                          b'"metrics": {"gateway-agent-port": 0}}', "bwvisu.json")


def _with_metrics_on(port: int) -> Settings:
    return msgspec.structs.replace(SETTINGS, metrics=msgspec.structs.replace(SETTINGS.metrics,
                                                                             gateway_agent_port=port))


async def _scrape(port: int) -> dict[tuple[str, str], float]:
    """The agent's /metrics: bwvisu samples by name and their one label's value."""
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return {}
    return {(s.name, next(iter(s.labels.values()), "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("bwvisu_")}


@pytest.mark.timeout(10)
async def test_the_agent_rebuilds_its_rules_at_start_beats_and_stops_on_request(
        agent: tuple[Agent, InMemoryFirewall, _Beats]) -> None:
    built, firewall, beats = agent
    await _forwarded_job(built.gateway.events)
    stop = asyncio.Event()
    port = free_port()
    running = asyncio.create_task(service.run(_with_metrics_on(port), _args(), stop))
    await asyncio.wait_for(beats.arrived.wait(), 5)
    # The heartbeat starts after the start-up reconcile: the chains are back by then.
    assert firewall.chains_ready and await firewall.rules() == [RULE]
    assert beats.sent[0] == ("bwvisu.gateways.gw0.heartbeat", {"gateway": "gw0", "forwards": 1})

    async def serves_its_figures() -> bool:
        found = await _scrape(port)
        return found.get(("bwvisu_gateway_forwards", "gw0")) == 1 and (
            ("bwvisu_event_lag_events", "gateway-agent-gw0") in found)

    await eventually(serves_its_figures, "the agent's /metrics: its forwards and its consumer's lag")
    ended = ev.JobEnded(job_id="j1", slurm_state="COMPLETED")
    ended_at = await built.gateway.events.append([ended])
    # The consumer takes the job's end: its rules go, and the agent says so (ForwardsRemoved).
    assert await built.gateway.jobs.wait_for("j1", lambda j: j.seq > ended_at, 5) is not None
    _, last = (await built.gateway.events.read_job("j1"))[-1]
    assert isinstance(last, ev.ForwardsRemoved) and await firewall.rules() == []
    stop.set()
    await asyncio.wait_for(running, 5)


class _DeadProbes:
    async def run_forever(self) -> None:
        raise RuntimeError("prober gone")


@pytest.mark.timeout(10)
async def test_a_dead_loop_is_named_and_stops_the_agent(
        agent: tuple[Agent, InMemoryFirewall, _Beats]) -> None:
    built, _, _ = agent
    built.probes = _DeadProbes()  # type: ignore[assignment]
    with pytest.raises(TaskDied, match="gateway-agent-gw0: task probe raised RuntimeError"):
        await asyncio.wait_for(service.run(SETTINGS, _args()), 5)
