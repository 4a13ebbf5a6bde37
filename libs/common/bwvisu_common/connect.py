"""Builds the shared adapters from settings: the only place they are constructed."""

from __future__ import annotations

import contextlib
from contextlib import AsyncExitStack

from nats.aio.client import Client as NatsClient

from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats
from bwvisu_common.settings import Settings, host_port


async def close_nats(nc: NatsClient) -> None:
    """Flush and close. Not drain(): it waits out its 30 s timeout on consumer subscriptions,
    and every append and ack was awaited already."""
    with contextlib.suppress(Exception):
        await nc.flush(timeout=2)
    await nc.close()


async def open_stores(
    settings: Settings, stack: AsyncExitStack, name: str
) -> tuple[JetStreamEventStore, EtcdStateStore]:
    """Connect to NATS and etcd, make sure the stream exists, close both with `stack`."""
    nc = await connect_nats(settings.nats_servers, name)
    stack.push_async_callback(close_nats, nc)
    events = JetStreamEventStore(nc, replicas=settings.stream_replicas)
    await events.ensure_stream()
    host, port = host_port(settings.etcd_servers[0], 2379, "etcd-servers[0]")
    state = await EtcdStateStore.connect(host, port)
    stack.push_async_callback(state.close)
    return events, state
