"""The gateway's sign of life on core NATS: keyhole-api assigns ports only to gateways that beat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from bwvisu_common.heartbeats import HEARTBEAT_INTERVAL, Heartbeat, heartbeat_subject
from gateway_agent.gateway import Gateway

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]


async def beat_forever(publish: Publish, gateway: Gateway, interval: float = HEARTBEAT_INTERVAL) -> None:
    """Publish a Heartbeat every `interval` seconds; a failed one is skipped, never fatal."""
    encoder = msgspec.json.Encoder()
    subject = heartbeat_subject(gateway.name)
    while True:
        try:
            await publish(subject, encoder.encode(Heartbeat(gateway=gateway.name,
                                                            forwards=gateway.forward_count)))
        except Exception as exc:  # NATS reconnecting: the next beat will do
            log.debug("heartbeat not sent: %s", exc)
        await asyncio.sleep(interval)
