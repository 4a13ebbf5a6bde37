"""Builds the gateway agent from settings: the only place its adapters are constructed."""

from __future__ import annotations

from contextlib import AsyncExitStack

from nats.aio.client import Client as NatsClient

from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.adapters.tcp_prober import TcpProber
from bwvisu_common.connect import open_stores
from bwvisu_common.errors import ConfigError
from bwvisu_common.projector import LiveJobs
from bwvisu_common.settings import Settings
from gateway_agent.adapters.iptables import IptablesFirewall
from gateway_agent.agent import GatewayAgent
from gateway_agent.domain.checks import Limits
from gateway_agent.domain.rules import is_ipv4, rule_tag


async def build(settings: Settings, gateway: str,
                stack: AsyncExitStack) -> tuple[GatewayAgent, LiveJobs, JetStreamEventStore, NatsClient]:
    nodes = {g.label: g for g in settings.gateway_nodes}
    if gateway not in nodes:
        raise ConfigError(f"--gateway {gateway!r} is not in gateway-nodes ({', '.join(nodes) or 'none'})")
    try:
        # Rules carry the system's job tag: two bwvisus sharing a gateway (a test system beside
        # the real one) never reconcile away each other's forwards.
        tag = rule_tag(settings.scheduler.job_tag)
    except ValueError as exc:
        raise ConfigError(f"scheduler.job-tag: {exc}") from exc
    node = nodes[gateway]
    if not is_ipv4(node.external_ip):
        # Every DNAT matches it: without one address, a rule would take the port on all of them.
        raise ConfigError(f"gateway-nodes[{gateway}].external-ip: {node.external_ip!r} is not an IPv4 "
                          "address (the gateway's rules match it)")
    events, state = await open_stores(settings, stack, f"gateway-agent-{gateway}")
    nc = events.nats
    jobs = LiveJobs(events, state)
    r = settings.keyholed_port_range
    limits = Limits(port_min=r.min, port_max=r.max, max_forwards=settings.keyholed_max_forwarders_per_job,
                    node_suffix=settings.forwarding_hostname_suffix)
    agent = GatewayAgent(gateway, node.internal_ip, events, state, jobs, IptablesFirewall(tag=tag),
                         TcpProber(), external_ip=node.external_ip, limits=limits,
                         restrict_sources=settings.restrict_forwards_to_clients)
    return agent, jobs, events, nc
