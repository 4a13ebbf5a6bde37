"""Reconciler: makes the chains and the reservations say what the log says, at start and periodically.

Rules deleted by hand come back, rules of jobs that ended (while the agent was down, say) go, and
the reservations of finished jobs are given back. The decisions are in domain/reconciling.py.
"""

from __future__ import annotations

import asyncio
import logging

from bwvisu_common import events as ev
from bwvisu_common.state_keys import gateway_ports
from gateway_agent.domain.checks import shown
from gateway_agent.domain.forwarding import ForwardTable, logical_rules
from gateway_agent.domain.history import allowed_addresses
from gateway_agent.domain.reconciling import (
    LeaveOut,
    is_over,
    jobs_to_check,
    owners_to_release,
    plan_reconcile,
    restore_decision,
)
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.gateway import Gateway

log = logging.getLogger(__name__)

RECONCILE_EVERY = 30.0  # seconds


class Reconciler:
    """Desired rules (from the log) vs installed rules (from the firewall), and stale reservations."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    async def start(self) -> None:
        """Hook the chains in and reconcile them with the log (the read model must be caught up)."""
        await self._gw.firewall.ensure_chains()
        await self.reconcile()

    async def run_forever(self, every: float = RECONCILE_EVERY) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.reconcile()
            except Exception:  # iptables or etcd may be back next time
                log.exception("reconcile failed; trying again later")

    async def reconcile(self) -> None:
        """Make the chains say what the log says: stale rules out, missing rules back in."""
        gw = self._gw
        async with gw.lock:
            # The chains and the histories of the jobs the read model puts here, read at once.
            here = jobs_to_check([], gw.jobs.all(), gw.name)
            installed, histories = await asyncio.gather(gw.firewall.rules(), gw.histories(here))
            desired = ForwardTable()  # what each job should have, any source, and its clients
            checked = jobs_to_check(installed, gw.jobs.all(), gw.name)
            live = [j for j in checked if not is_over(gw.jobs.get(j))]
            histories |= await gw.histories([j for j in live if j not in histories])
            addresses: dict[str, str] = {}  # node -> address: many jobs share a node
            for job_id in live:
                rules, sources = await self._desired(job_id, histories.get(job_id, []), addresses)
                if rules:
                    desired.put(job_id, rules, sources)
            plan = plan_reconcile(installed, {job_id: gw.concrete(rules, desired.sources[job_id])
                                              for job_id, rules in desired.rules.items()})
            gw.table = ForwardTable(rules={r.job_id: [] for r in installed})  # so that remove takes them out
            for job_id in plan.stale:
                await gw.remove(job_id)
            if plan.mismatched:
                await gw.firewall.remove_jobs(plan.mismatched)
            await gw.firewall.install(plan.install)
            gw.table = desired
            await self._release_finished()
            log.info("reconciled: %d job(s) forwarded, %d stale job(s) removed", len(desired.rules),
                     len(plan.stale))

    async def _desired(self, job_id: str, history: list[ev.AnyEvent],
                       addresses: dict[str, str]) -> tuple[list[ForwardRule], list[str]]:
        """The job's forwards as the log says (checked like a new assignment), and its clients."""
        gw = self._gw
        decision = restore_decision(history, gw.name, gw.limits)
        if decision is None:
            return [], []
        if isinstance(decision, LeaveOut):
            log.warning("job %s: its forwards stay out: %s", job_id, decision.reason)
            return [], []
        want = decision.wanted
        try:
            if want.nodes[0] not in addresses:
                addresses[want.nodes[0]] = await gw.resolve(want.nodes[0])
            ip = addresses[want.nodes[0]]
        except OSError:
            log.warning("job %s: cannot resolve %s; its forwards stay out", job_id, shown(want.nodes[:1]))
            return [], []
        return (logical_rules(job_id, ip, want.forwards, gw.external_ip),
                gw.valid_sources(job_id, allowed_addresses(history)))

    async def _release_finished(self) -> None:
        gw = self._gw
        held = await gw.state.reservations(gateway_ports(gw.name))
        views = {owner: gw.jobs.get(owner) for owner in set(held.values())}
        for job_id in owners_to_release(held, views):
            if await gw.release(job_id, held):
                log.info("job %s: released reservations of a finished job", job_id)
