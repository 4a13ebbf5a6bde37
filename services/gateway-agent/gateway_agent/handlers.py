"""GatewayHandlers: what the gateway does on each event of the stream.

PortsAssigned to this gateway -> forward (or PortsUnavailable), ClientAddressAllowed -> accept the
owner's new address, the job's end -> forwards out and reservations back. The decisions are in
domain/forwarding.py; this module does the I/O around them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bwvisu_common import events as ev
from bwvisu_common.assignments import is_current
from bwvisu_common.errors import ConcurrencyConflict
from gateway_agent.domain.forwarding import (
    Refuse,
    busy_ports,
    decide_forward,
    forwarded,
    logical_rules,
    port_checks,
    unavailable,
)
from gateway_agent.domain.history import wanted
from gateway_agent.errors import FirewallError
from gateway_agent.gateway import Gateway

log = logging.getLogger(__name__)


class GatewayHandlers:
    """Takes every event (`handle`, for the durable consumer); acts on those about this gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    async def handle(self, _seq: int, event: ev.AnyEvent) -> None:
        if isinstance(event, ev.PortsAssigned) and event.gateway == self._gw.name:
            async with self._gw.lock:
                await self._forward(event)
        elif isinstance(event, (ev.JobEnded, ev.JobCancelRequested)):
            async with self._gw.lock:
                await self._gw.remove(event.job_id)
        elif isinstance(event, ev.ClientAddressAllowed) and self._gw.restrict_sources:
            async with self._gw.lock:
                await self._allow(event.job_id, event.address)

    async def _forward(self, assigned: ev.PortsAssigned) -> None:
        gw, job_id = self._gw, assigned.job_id
        numbered = await gw.events.read_job(job_id)
        history = [e for _, e in numbered]
        decision = decide_forward(history, assigned, gw.limits)
        if decision is None:
            # Answered already, given up on, or superseded. A redelivery after this agent failed
            # between installing and confirming finds rules here that nothing wants: out with them.
            await self._drop_unwanted(job_id, history)
            return
        if isinstance(decision, Refuse):
            log.warning("job %s: refused assignment %s: %s", job_id, assigned.event_id, decision.reason)
            await self._unavailable(assigned, decision.reason)
            return
        try:
            ips = [await gw.resolve(node) for node in assigned.nodes]
        except OSError as exc:
            await self._unavailable(assigned, f"cannot resolve the job's nodes: {exc}")
            return
        busy = await self._busy(job_id, ips, assigned.forwards, moved=bool(assigned.moved_from))
        if busy:
            await self._unavailable(assigned, "in use: " + ", ".join(busy))
            return
        rules = logical_rules(job_id, ips[0], assigned.forwards, gw.external_ip)
        sources = gw.valid_sources(job_id, decision.sources)
        try:
            await gw.firewall.install(gw.concrete(rules, sources))
        except FirewallError as exc:
            await self._unavailable(assigned, str(exc))
            return
        gw.table.put(job_id, rules, sources)
        if not await self._confirm(assigned, numbered[-1][0]):
            # keyhole-api gave up on it meanwhile (and gave its ports back), or the job moved on.
            log.info("job %s: assignment %s was given up on while installing", job_id, assigned.event_id)
            await self._drop_unwanted(job_id, await gw.history(job_id))
            return
        log.info("job %s: forwarded %s", job_id,
                 ", ".join(f"{r.external_port}->{r.target_ip}:{r.internal_port}" for r in rules))

    async def _confirm(self, assigned: ev.PortsAssigned, seen: int, attempts: int = 5) -> bool:
        """Append PortsForwarded only while the assignment still awaits its answer, on the history
        read (keyhole-api gives up on the same terms): never both. False: it no longer awaits it."""
        gw = self._gw
        for _ in range(attempts):
            try:
                await gw.events.append([forwarded(assigned, gw.name)], expected_version=seen)
                return True
            except ConcurrencyConflict:  # something else happened to the job: is it still ours?
                numbered = await gw.events.read_job(assigned.job_id)
                if not is_current([e for _, e in numbered], assigned.event_id):
                    return False
                seen = numbered[-1][0]
        return False

    async def _drop_unwanted(self, job_id: str, history: Sequence[ev.Event]) -> None:
        """Take out the job's rules here unless its history wants forwards on this gateway (those
        the reconcile keeps as they should be)."""
        gw = self._gw
        if gw.table.holds(job_id) and wanted(history, gw.name) is None:
            await gw.firewall.remove_jobs([job_id])
            gw.table.drop(job_id)
            log.info("job %s: forwards nothing wants taken out", job_id)

    async def _busy(self, job_id: str, ips: list[str], forwards: Sequence[ev.Forward],
                    moved: bool) -> list[str]:
        """Ports something already uses: internal ones on any node (unless moved), external ones here."""
        gw = self._gw
        # The table mirrors the chains: no full read of a gateway's thousands of rules per assignment.
        # (Another bwvisu's forwards on this gateway are checked by the firewall when it installs.)
        others = [r.external_port for other, rules in gw.table.rules.items() if other != job_id
                  for r in rules]
        checks = port_checks(ips, forwards, gw.own_ip, moved)
        answers = await asyncio.gather(*(gw.prober.is_open(h, p, gw.timing.probe_timeout)
                                         for h, p in checks))
        return busy_ports(checks, answers, forwards, others, gw.own_ip)

    async def _allow(self, job_id: str, address: str) -> None:
        """A new client address of the owner: its rules join the job's (if forwarded here)."""
        gw = self._gw
        if not gw.table.is_new_client(job_id, address) or not gw.valid_sources(job_id, [address]):
            return
        try:
            await gw.firewall.install(gw.concrete(gw.table.rules[job_id], [address]))
        except FirewallError as exc:
            log.error("job %s: cannot allow client %s: %s", job_id, address, exc)
            return
        gw.table.add_client(job_id, address)
        log.info("job %s: forwards accept %s", job_id, address)

    async def _unavailable(self, assigned: ev.PortsAssigned, reason: str) -> None:
        log.info("job %s: ports unavailable: %s", assigned.job_id, reason)
        await self._gw.events.append([unavailable(assigned, self._gw.name, reason)])
