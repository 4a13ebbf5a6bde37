"""The gateway agent's capabilities: a firewall it forwards with, a prober it checks ports with."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from bwvisu_common.ports import PortProber as PortProber
from gateway_agent.domain.activity import Connection
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



class TrafficCounters(Protocol):
    """The connections through the gateway with their packet counts, read all at once."""

    async def connections(self) -> list[Connection]:
        """Every TCP connection the gateway tracks now; TrafficUnavailable if they cannot be read."""
        ...
