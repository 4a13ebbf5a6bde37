"""Builds the gateway agent from settings: the only place its adapters are constructed."""

from __future__ import annotations

from contextlib import AsyncExitStack

from nats.aio.client import Client as NatsClient

from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats
from bwvisu_common.errors import ConfigError
from bwvisu_common.projector import LiveJobs
from bwvisu_common.settings import Settings, host_port
from gateway_agent.adapters.iptables import IptablesFirewall
from gateway_agent.adapters.prober import TcpProber
from gateway_agent.agent import GatewayAgent


async def build(settings: Settings, gateway: str,
                stack: AsyncExitStack) -> tuple[GatewayAgent, LiveJobs, JetStreamEventStore, NatsClient]:
    nodes = {g.label: g for g in settings.gateway_nodes}
    if gateway not in nodes:
        raise ConfigError(f"--gateway {gateway!r} is not in gateway-nodes ({', '.join(nodes) or 'none'})")
    nc = await connect_nats(settings.nats_servers, f"gateway-agent-{gateway}")
    stack.push_async_callback(nc.drain)
    events = JetStreamEventStore(nc, replicas=settings.stream_replicas)
    await events.ensure_stream()
    host, port = host_port(settings.etcd_servers[0], 2379, "etcd-servers[0]")
    state = await EtcdStateStore.connect(host, port)
    stack.push_async_callback(state.close)
    jobs = LiveJobs(events, state)
    agent = GatewayAgent(gateway, nodes[gateway].internal_ip, events, state, jobs, IptablesFirewall(),
                         TcpProber())
    return agent, jobs, events, nc
