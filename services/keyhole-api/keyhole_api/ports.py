"""What keyhole-api needs beyond the shared event log and state store (bwvisu_common.ports)."""

from __future__ import annotations

from typing import Protocol


class GatewayLiveness(Protocol):
    """Which gateway agents are alive (GatewayHeartbeats, from their heartbeats)."""

    def alive(self) -> list[str]:
        """The live gateways, by name."""
        ...

    def forget(self, gateway: str) -> None:
        """Count a gateway as dead until it shows life again (it failed to answer)."""
        ...
