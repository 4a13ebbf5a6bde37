"""Gateway agents' signs of life: who publishes them where, how often, and when silence means dead.

Shared by the gateway agents (which publish), keyhole-api (which reserves only on live gateways)
and the portal (which shows the gateways' state); those two hear them through GatewayHeartbeats.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = logging.getLogger(__name__)

HEARTBEAT_SUBJECTS = "bwvisu.gateways.*.heartbeat"
HEARTBEAT_INTERVAL = 1.0  # seconds between an agent's heartbeats
HEARTBEAT_TIMEOUT = 5.0  # an agent silent this long counts as dead


def heartbeat_subject(gateway: str) -> str:
    return f"bwvisu.gateways.{gateway}.heartbeat"


def heartbeat_gateway(subject: str) -> str:
    """The gateway a heartbeat speaks for: from its subject, which only that gateway's agent may
    publish on (NATS permissions), never from the body, which any agent could fill in."""
    parts = subject.split(".")
    return parts[2] if len(parts) == 4 and parts[3] == "heartbeat" else ""


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """A gateway agent's sign of life, on core NATS (not an event: it changes no job)."""

    gateway: str
    forwards: int = 0


class Subscriber(Protocol):
    """What following heartbeats needs of a NATS connection."""

    async def subscribe(self, subject: str, *, cb: Callable[[Msg], Awaitable[None]]) -> Any: ...


_decode = msgspec.json.Decoder(Heartbeat).decode


class GatewayHeartbeats:
    """The last heartbeat of each gateway agent, as heard by this process: who is alive, and
    how many forwards each reported. Silent for `timeout` seconds means dead."""

    def __init__(self, timeout: float = HEARTBEAT_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def beat(self, gateway: str, forwards: int = 0, at: float | None = None) -> None:
        self._last[gateway] = (self._clock() if at is None else at, forwards)

    def forget(self, gateway: str) -> None:
        """Count a gateway as dead until its next heartbeat (it failed to answer)."""
        self._last.pop(gateway, None)

    def last(self, gateway: str) -> tuple[float, int] | None:
        """(seconds since the last heartbeat, forwards the agent reported), or None if never heard."""
        seen = self._last.get(gateway)
        return None if seen is None else (self._clock() - seen[0], seen[1])

    def alive(self) -> list[str]:
        now = self._clock()
        return sorted(g for g, (t, _) in self._last.items() if now - t <= self.timeout)

    def heard(self, subject: str, data: bytes) -> None:
        """A heartbeat message arrived; the gateway is the subject's, which only its agent may use."""
        try:
            beat = _decode(data)
        except msgspec.DecodeError:
            log.warning("undecodable heartbeat on %s", subject)
            return
        gateway = heartbeat_gateway(subject)
        if gateway:
            self.beat(gateway, beat.forwards)

    async def follow(self, nc: Subscriber) -> Callable[[], Awaitable[None]]:
        """Subscribe to every agent's heartbeats; what it returns ends the subscription."""

        async def on_beat(msg: Msg) -> None:
            self.heard(msg.subject, msg.data)

        subscription = await nc.subscribe(HEARTBEAT_SUBJECTS, cb=on_beat)

        async def unfollow() -> None:
            # A connection closed already took its subscriptions with it.
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

        return unfollow
