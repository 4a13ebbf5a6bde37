"""Gateway agents' signs of life: who publishes them where, how often, and when silence means dead.

Shared by the gateway agents (which publish), keyhole-api (which reserves only on live gateways)
and the portal (which shows the gateways' state).
"""

from __future__ import annotations

import msgspec

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
