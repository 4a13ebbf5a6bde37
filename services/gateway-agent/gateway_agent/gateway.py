"""Gateway: one gateway's identity, its ports and what it forwards now, shared by the handlers, the
reconciler and the probes, with the I/O they share (a job's history, taking a job's forwards out).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from bwvisu_common import events as ev
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.state_keys import NODE_PORTS, gateway_ports, grant_key, held_by
from gateway_agent.domain.checks import Limits, shown
from gateway_agent.domain.forwarding import ForwardTable, concrete_rules, split_sources
from gateway_agent.domain.probing import Timing
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.ports import Firewall, PortProber

log = logging.getLogger(__name__)

Resolver = Callable[[str], Awaitable[str]]
# From this many jobs on, one pass over the stream reads their histories faster than a look-up each
# (a look-up is a round trip per event of the job).
SCAN_FROM = 64
SCAN_BATCH = 1000


async def resolve_ipv4(host: str) -> str:
    """A node name (or address) to its IPv4 address."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET,
                                                         type=socket.SOCK_STREAM)
    return str(infos[0][4][0])


@dataclass(kw_only=True)
class Gateway:
    """One gateway: who it is, what it talks to, and the forwards it holds now."""

    name: str
    own_ip: str  # where the gateway reaches the nodes (and probes its own external ports)
    events: EventStore
    state: StateStore
    jobs: LiveJobs
    firewall: Firewall
    prober: PortProber
    resolve: Resolver = resolve_ipv4
    timing: Timing = field(default_factory=Timing)
    external_ip: str = ""  # every DNAT matches it (-d); own_ip if not given
    limits: Limits = field(default_factory=Limits)
    restrict_sources: bool = False  # forwards only from the owner's client addresses
    table: ForwardTable = field(default_factory=ForwardTable)
    # Rule changes and reconciling never interleave.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.external_ip = self.external_ip or self.own_ip

    @property
    def forward_count(self) -> int:
        return self.table.count

    async def history(self, job_id: str) -> list[ev.AnyEvent]:
        return [event for _, event in await self.events.read_job(job_id)]

    async def histories(self, job_ids: Collection[str]) -> dict[str, list[ev.AnyEvent]]:
        """Several jobs' histories (each job's events in order); jobs without events are left out."""
        wanted = set(job_ids)
        found: dict[str, list[ev.AnyEvent]] = {}
        if len(wanted) < SCAN_FROM:
            for job_id in wanted:
                if history := await self.history(job_id):
                    found[job_id] = history
            return found
        last = await self.events.last_seq()
        if last == 0:
            return found
        async for batch in self.events.batches(0, SCAN_BATCH):
            for _, event in batch:
                if event.job_id in wanted:
                    found.setdefault(event.job_id, []).append(event)
            if len(batch) < SCAN_BATCH or batch[-1][0] >= last:
                break  # caught up with the stream as it was when asked
        return found

    def concrete(self, rules: Sequence[ForwardRule], sources: Sequence[str]) -> list[ForwardRule]:
        return concrete_rules(rules, sources, self.restrict_sources)

    @staticmethod
    def valid_sources(job_id: str, addresses: Sequence[str]) -> list[str]:
        good, bad = split_sources(addresses)
        if bad:
            log.warning("job %s: ignored client address(es) that are not IPv4: %s", job_id, shown(bad))
        return good

    async def remove(self, job_id: str) -> None:
        """Take the job's forwards out, give back its reservations, and say so (call with the lock)."""
        # The table mirrors the chains: no iptables call for the many jobs never forwarded here.
        removed = await self.firewall.remove_jobs([job_id]) if self.table.holds(job_id) else []
        self.table.drop(job_id)
        released = await self.release(job_id)
        # No event for a job the log does not know: it would make one up.
        if (removed or released) and self.jobs.get(job_id) is not None:
            await self.events.append([ev.ForwardsRemoved(job_id=job_id, gateway=self.name)])
            log.info("job %s: %d forward(s) removed, %d reservation(s) released", job_id,
                     len(removed), released)

    async def release(self, job_id: str, held: dict[str, str] | None = None) -> int:
        """Give back the job's ports on this gateway, and with them its node ports and grant, in one
        step; how many of this gateway's ports it held (`held`: them all, if already read)."""
        held = held if held is not None else await self.state.reservations(gateway_ports(self.name))
        mine = held_by(held, job_id)
        if not mine:
            return 0
        nodes = held_by(await self.state.reservations(NODE_PORTS), job_id)
        await self.state.release_job(job_id, [*mine, *nodes, grant_key(job_id)])
        return len(mine)


class GatewayForwards:
    """`bwvisu_gateway_forwards{gateway}`: the forwards this agent's chains hold now (its table)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("bwvisu_gateway_forwards", "Port forwards a gateway holds now",
                                   labels=["gateway"])
        family.add_metric([self._gateway.name], self._gateway.forward_count)
        yield family
