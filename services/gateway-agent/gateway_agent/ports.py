"""The gateway agent's capabilities: a firewall it forwards with, a prober it checks ports with."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from gateway_agent.domain.rules import ForwardRule


class Firewall(Protocol):
    """Port forwards in the gateway's NAT table, in bwvisu's own chains, tagged by job."""

    async def ensure_chains(self) -> None:
        """Create the chains and hook them in (idempotent)."""
        ...

    async def rules(self) -> list[ForwardRule]:
        """Every forward now installed."""
        ...

    async def install(self, rules: Sequence[ForwardRule]) -> None:
        """Add what is missing of these forwards, all in one batch or none."""
        ...

    async def remove_jobs(self, job_ids: Collection[str]) -> list[ForwardRule]:
        """Remove every rule of these jobs, in one batch; return the forwards removed."""
        ...


class PortProber(Protocol):
    """Whether something accepts TCP connections on host:port (`nc -z`)."""

    async def is_open(self, host: str, port: int, timeout: float = 0.5) -> bool:
        """True if a TCP connection to host:port succeeds within `timeout`."""
        ...
