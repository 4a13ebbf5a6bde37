"""Builds keyhole-api from settings: the only place its adapters are constructed."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

import msgspec
from fastapi import FastAPI
from nats.aio.msg import Msg

from bwvisu_common.connect import open_stores
from bwvisu_common.heartbeats import HEARTBEAT_SUBJECTS, Heartbeat, heartbeat_gateway
from bwvisu_common.projector import LiveJobs
from bwvisu_common.settings import Settings
from keyhole_api.app import create_app
from keyhole_api.health import GatewayHealth
from keyhole_api.service import KeyholeService

log = logging.getLogger(__name__)
_heartbeat = msgspec.json.Decoder(Heartbeat)


async def build(settings: Settings, stack: AsyncExitStack) -> FastAPI:
    """Connect, follow the stream and the heartbeats; everything closes with `stack`."""
    events, state = await open_stores(settings, stack, "keyhole-api")
    nc = events.nats

    health = GatewayHealth()

    async def on_heartbeat(msg: Msg) -> None:
        try:
            _heartbeat.decode(msg.data)
            gateway = heartbeat_gateway(msg.subject)
            if gateway:
                health.beat(gateway)
        except msgspec.DecodeError:
            log.warning("undecodable heartbeat on %s", msg.subject)

    await nc.subscribe(HEARTBEAT_SUBJECTS, cb=on_heartbeat)
    jobs = LiveJobs(events, state)
    follower = asyncio.create_task(jobs.run(), name="live-jobs")

    async def stop_follower() -> None:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)

    stack.push_async_callback(stop_follower)
    return create_app(KeyholeService(settings, events, state, jobs, health), health,
                      max_body=settings.keyhole_api.max_body_bytes)
