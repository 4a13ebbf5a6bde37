"""Builds the shared adapters from settings: the only place they are constructed."""

from __future__ import annotations

from contextlib import AsyncExitStack

from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats
from bwvisu_common.settings import Settings, host_port


async def open_stores(
    settings: Settings, stack: AsyncExitStack, name: str
) -> tuple[JetStreamEventStore, EtcdStateStore]:
    """Connect to NATS and etcd, make sure the stream exists, close both with `stack`."""
    nc = await connect_nats(settings.nats_servers, name)
    stack.push_async_callback(nc.drain)
    events = JetStreamEventStore(nc, replicas=settings.stream_replicas)
    await events.ensure_stream()
    host, port = host_port(settings.etcd_servers[0], 2379, "etcd-servers[0]")
    state = await EtcdStateStore.connect(host, port)
    stack.push_async_callback(state.close)
    return events, state
