"""Builds the shared adapters from settings: the only place they are constructed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from nats.aio.client import Client as NatsClient

from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore, StreamLimits, connect_nats
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.settings import Settings, host_port

log = logging.getLogger(__name__)


async def close_nats(nc: NatsClient) -> None:
    """Flush and close. Not drain(): it waits out its 30 s timeout on consumer subscriptions,
    and every append and ack was awaited already."""
    with contextlib.suppress(Exception):
        await nc.flush(timeout=2)
    await nc.close()


async def open_stores_retrying(
    settings: Settings, stack: AsyncExitStack, name: str
) -> tuple[JetStreamEventStore, EtcdStateStore]:
    """open_stores, until it works: NATS or etcd may not be there yet (`bwvisu up` starts them
    first, but a restart of either must not kill a service); each failure is logged."""
    while True:
        try:
            return await open_stores(settings, stack, name)
        except DependencyUnavailable as exc:
            log.warning("%s; retrying in 2 s", exc)
            await asyncio.sleep(2)


def stream_limits(settings: Settings) -> StreamLimits:
    return StreamLimits(max_bytes=settings.stream_max_bytes, max_age=settings.stream_max_age * 86400,
                        max_per_job=settings.stream_max_events_per_job)


async def open_stores(
    settings: Settings, stack: AsyncExitStack, name: str
) -> tuple[JetStreamEventStore, EtcdStateStore]:
    """Connect to NATS and etcd, make sure the stream exists, close both with `stack`."""
    nc = await connect_nats(settings.nats_servers, name)
    stack.push_async_callback(close_nats, nc)
    events = JetStreamEventStore(nc, replicas=settings.stream_replicas, limits=stream_limits(settings))
    await events.ensure_stream()
    state = await _first_etcd_answering(settings)
    stack.push_async_callback(state.close)
    return events, state


async def _first_etcd_answering(settings: Settings) -> EtcdStateStore:
    """The first of `etcd-servers` that answers: one member down does not stop a service."""
    problems = []
    for i, address in enumerate(settings.etcd_servers):
        host, port = host_port(address, 2379, f"etcd-servers[{i}]")
        try:
            return await EtcdStateStore.connect(host, port)
        except DependencyUnavailable as exc:
            problems.append(str(exc))
    raise DependencyUnavailable("; ".join(problems) or "no etcd-servers configured")
