"""Gateway agents' heartbeats (core NATS): which agents are alive and how many forwards they hold."""

from __future__ import annotations

import logging
import time

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from bwvisu_common.heartbeats import HEARTBEAT_SUBJECTS, HEARTBEAT_TIMEOUT, Heartbeat, heartbeat_gateway

log = logging.getLogger(__name__)


class HeartbeatLog:
    """The last heartbeat of each gateway agent, as seen by this process."""

    def __init__(self, timeout: float = HEARTBEAT_TIMEOUT) -> None:
        self.timeout = timeout
        self._last: dict[str, tuple[float, int]] = {}
        self._decode = msgspec.json.Decoder(Heartbeat).decode

    def beat(self, gateway: str, forwards: int, at: float | None = None) -> None:
        self._last[gateway] = (time.monotonic() if at is None else at, forwards)

    def last(self, gateway: str) -> tuple[float, int] | None:
        """(seconds since the last heartbeat, forwards the agent reported), or None if never heard."""
        seen = self._last.get(gateway)
        return None if seen is None else (time.monotonic() - seen[0], seen[1])

    async def follow(self, nc: NatsClient) -> None:
        """Subscribe to every agent's heartbeats; the subscription ends with the connection."""

        async def on_beat(msg: Msg) -> None:
            try:
                beat = self._decode(msg.data)
            except msgspec.DecodeError:
                log.warning("undecodable heartbeat on %s", msg.subject)
                return
            gateway = heartbeat_gateway(msg.subject)  # the subject NATS lets only that agent use
            if gateway:
                self.beat(gateway, beat.forwards)

        await nc.subscribe(HEARTBEAT_SUBJECTS, cb=on_beat)
