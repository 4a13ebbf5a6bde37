"""Builds the shared adapters from settings: the only place they are constructed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from contextlib import AsyncExitStack
from datetime import timedelta
from urllib.parse import urlsplit

from nats.aio.client import Client as NatsClient

from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.etcd_members import EtcdLogin
from bwvisu_common.adapters.jetstream import JetStreamEventStore, StreamLimits, gateway_identity
from bwvisu_common.adapters.nats_connection import NatsAuth, connect_nats
from bwvisu_common.errors import ConfigError, DependencyUnavailable
from bwvisu_common.nearby import local_first
from bwvisu_common.secret_files import read_secret_file
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


def finished_jobs_kept_for(settings: Settings) -> timedelta:
    """How long a finished job stays in LiveJobs and etcd's read model."""
    return timedelta(days=settings.finished_jobs_kept_for)


def stream_limits(settings: Settings) -> StreamLimits:
    return StreamLimits(max_bytes=settings.stream_max_bytes, max_age=settings.stream_max_age * 86400,
                        max_per_job=settings.stream_max_events_per_job)


async def open_stores(
    settings: Settings, stack: AsyncExitStack, name: str
) -> tuple[JetStreamEventStore, EtcdStateStore]:
    """Connect to NATS and etcd as `name`'s identity, make sure the stream exists, close both with `stack`."""
    auth = nats_auth(settings, identity_of(name))
    nc = await connect_nats(local_first(settings.nats_servers, nats_host), name, auth)
    stack.push_async_callback(close_nats, nc)
    events = JetStreamEventStore(nc, replicas=settings.stream_replicas, source=identity_of(name),
                                 limits=stream_limits(settings))
    if not auth.user or auth.user in STREAM_MANAGERS:
        await events.ensure_stream()
    else:
        await _stream_made(events)
    state = await _first_etcd_answering(settings, auth)
    stack.push_async_callback(state.close)
    return events, state


# The identities that may create and upgrade the stream; the others wait until it is there.
STREAM_MANAGERS = frozenset({"scheduler-adapter", "projector", "admin"})


async def _stream_made(events: JetStreamEventStore, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await events.last_seq()
            return
        except DependencyUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


# Connection names that share an identity; any other name is its own identity.
_IDENTITIES = {"web-portal": "web", "bwvisu-projector": "projector", "bwvisu-status": "admin",
               "bwvisu-rebuild": "admin", "bwvisu-jobs": "admin"}


def identity_of(name: str) -> str:
    """The NATS/etcd user a connection `name` logs in as (also the source token of its events)."""
    if name.startswith("gateway-agent-"):
        return gateway_identity(name.removeprefix("gateway-agent-"))
    return _IDENTITIES.get(name, name)


def credential_file(settings: Settings, identity: str) -> str:
    return os.path.join(settings.credentials.dir, f"{identity}.password")


def nats_auth(settings: Settings, identity: str) -> NatsAuth:
    """`identity`'s credentials from `credentials.dir`; none where the config says none are needed."""
    creds = settings.credentials
    # No dir: settings built in code (tests), not from a file, which always has one.
    path = credential_file(settings, identity) if creds.dir else ""
    if not path or not os.path.exists(path):
        if creds.required and path:
            raise ConfigError(f"credentials.dir: no password file {path} for {identity} "
                              "(`bwvisu up` makes one; a site writes one per service)")
        return NatsAuth(ca_file=creds.ca_file)
    password = read_secret_file(path, "credentials.dir", min_length=16, group_readable=False)
    return NatsAuth(user=identity, password=password, ca_file=creds.ca_file)


def etcd_members(settings: Settings) -> list[tuple[str, int]]:
    """`etcd-servers` as (host, port), this machine's own member first."""
    members = [host_port(address, 2379, f"etcd-servers[{i}]")
               for i, address in enumerate(settings.etcd_servers)]
    return local_first(members, lambda member: member[0])


def nats_host(url: str) -> str:
    return urlsplit(url if "://" in url else f"nats://{url}").hostname or ""


async def _first_etcd_answering(settings: Settings, auth: NatsAuth) -> EtcdStateStore:
    """The first of `etcd-servers` that answers; the store moves on to another when it stops."""
    members = etcd_members(settings)
    login = EtcdLogin(user=auth.user, password=auth.password, ca_file=auth.ca_file)
    return await EtcdStateStore.connect_cluster(members, login=login)
