"""Builds the gateway agent from settings: the only place its adapters are constructed."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from bwvisu_common.adapters.tcp_prober import TcpProber
from bwvisu_common.connect import finished_jobs_kept_for, open_stores
from bwvisu_common.errors import ConfigError
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.settings import Settings, gateway_metrics_host
from gateway_agent.activity import Activity
from gateway_agent.adapters.conntrack import ProcConntrack
from gateway_agent.adapters.iptables import IptablesFirewall
from gateway_agent.domain.checks import Limits
from gateway_agent.domain.rules import is_ipv4, rule_tag
from gateway_agent.gateway import Gateway
from gateway_agent.handlers import GatewayHandlers
from gateway_agent.heartbeat import Publish
from gateway_agent.ports import TrafficCounters
from gateway_agent.probes import Probes
from gateway_agent.reconcile import Reconciler


@dataclass
class Agent:
    """One gateway's agent: its state and adapters, and the three things it does with them."""

    gateway: Gateway
    handlers: GatewayHandlers  # reacts to the stream's events
    reconciler: Reconciler  # periodic: chains and reservations vs the log
    probes: Probes  # periodic: forwarded ports opening and closing
    publish: Publish  # core NATS, for the heartbeat
    activity: Activity | None = None  # periodic: the sessions' traffic (None: not watched)


def agent_name(gateway: str) -> str:
    """One gateway's agent as NATS knows it: its identity, and the durable name it consumes under."""
    return f"gateway-agent-{gateway}"


def metrics_address(settings: Settings, gateway: str) -> tuple[str, int]:
    """Where the agent of `gateway` serves /metrics (port 0: not at all)."""
    host = next((gateway_metrics_host(settings, g) for g in settings.gateway_nodes if g.label == gateway),
                settings.metrics.host)
    return host, settings.metrics.gateway_agent_port


def assemble(gateway: Gateway, publish: Publish, counters: TrafficCounters | None = None,
             activity_interval: float = 60.0) -> Agent:
    """The agent's parts around one Gateway (tests assemble them around fakes)."""
    activity = Activity(gateway, counters, activity_interval) if counters is not None else None
    return Agent(gateway, GatewayHandlers(gateway), Reconciler(gateway), Probes(gateway), publish, activity)


def _rule_tag(settings: Settings) -> str:
    try:
        # Rules carry the system's job tag: two bwvisus sharing a gateway (a test system beside
        # the real one) never reconcile away each other's forwards.
        return rule_tag(settings.scheduler.job_tag)
    except ValueError as exc:
        raise ConfigError(f"scheduler.job-tag: {exc}") from exc


async def build(settings: Settings, gateway: str, stack: AsyncExitStack) -> Agent:
    """The agent of `gateway` (a name in gateway-nodes), connected; `stack` closes its connections."""
    nodes = {g.label: g for g in settings.gateway_nodes}
    if gateway not in nodes:
        raise ConfigError(f"--gateway {gateway!r} is not in gateway-nodes ({', '.join(nodes) or 'none'})")
    tag = _rule_tag(settings)
    node = nodes[gateway]
    if not is_ipv4(node.external_ip):
        # Every DNAT matches it: without one address, a rule would take the port on all of them.
        raise ConfigError(f"gateway-nodes[{gateway}].external-ip: {node.external_ip!r} is not an IPv4 "
                          "address (the gateway's rules match it)")
    events, state = await open_stores(settings, stack, agent_name(gateway))
    r = settings.keyholed_port_range
    limits = Limits(port_min=r.min, port_max=r.max, max_forwards=settings.keyholed_max_forwarders_per_job,
                    node_suffix=settings.forwarding_hostname_suffix)
    jobs = LiveJobs(events, state, kept_for=finished_jobs_kept_for(settings))
    return assemble(Gateway(name=gateway, own_ip=node.internal_ip, events=events, state=state,
                            jobs=jobs, firewall=IptablesFirewall(tag=tag),
                            prober=TcpProber(), external_ip=node.external_ip, limits=limits,
                            restrict_sources=settings.restrict_forwards_to_clients),
                    events.nats.publish, ProcConntrack(), settings.activity_interval)
