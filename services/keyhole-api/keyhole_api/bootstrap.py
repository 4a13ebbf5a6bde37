"""Builds keyhole-api from settings: the only place its adapters are constructed. Starts nothing."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.connect import finished_jobs_kept_for, open_stores
from bwvisu_common.heartbeats import GatewayHeartbeats
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.settings import Settings
from keyhole_api.failover import GatewayFailover
from keyhole_api.handlers import KeyholeHandlers


@dataclass(frozen=True)
class KeyholeApi:
    """keyhole-api's parts, connected and not yet running."""

    events: JetStreamEventStore
    jobs: LiveJobs
    heartbeats: GatewayHeartbeats
    handlers: KeyholeHandlers
    failover: GatewayFailover  # moves running jobs' forwards off dead gateways


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> KeyholeApi:
    """Connect to NATS and etcd (closed with `stack`) and wire the handlers to them."""
    events, state = await open_stores(settings, stack, "keyhole-api")
    heartbeats = GatewayHeartbeats()
    jobs = LiveJobs(events, state, kept_for=finished_jobs_kept_for(settings))
    return KeyholeApi(events, jobs, heartbeats, KeyholeHandlers(settings, events, state, jobs, heartbeats),
                      GatewayFailover(settings, events, state, jobs, heartbeats))
