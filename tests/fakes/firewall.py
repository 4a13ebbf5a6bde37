"""InMemoryFirewall: the gateway agent's Firewall for unit tests; tests/contract holds it to iptables."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from gateway_agent.domain.rules import ForwardRule
from gateway_agent.errors import FirewallError


class InMemoryFirewall:
    """A set of forwards; `fail_next` makes the next change fail like a refused batch."""

    def __init__(self) -> None:
        self.installed: set[ForwardRule] = set()
        self.chains_ready = False
        self.fail_next = False
        self.batches = 0

    def _change(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise FirewallError("iptables-restore failed (scripted)")
        self.batches += 1

    async def ensure_chains(self) -> None:
        self.chains_ready = True

    async def rules(self) -> list[ForwardRule]:
        return sorted(self.installed)

    async def install(self, rules: Sequence[ForwardRule]) -> None:
        missing = set(rules) - self.installed
        unbound = [f for f in missing if not f.gateway_ip]
        if unbound:
            # As iptables' text would: a DNAT must match the gateway's address (-d).
            raise FirewallError(f"forward of job {unbound[0].job_id} to port {unbound[0].external_port} "
                                "names no gateway address (-d)")
        jobs = {f.job_id for f in rules}
        taken = sorted({f.external_port for f in self.installed if f.job_id not in jobs}
                       & {f.external_port for f in rules})
        if taken:
            raise FirewallError(f"port(s) {', '.join(map(str, taken))} are forwarded for another job")
        if missing:
            self._change()
            self.installed |= missing

    async def remove_jobs(self, job_ids: Collection[str]) -> list[ForwardRule]:
        gone = {f for f in self.installed if f.job_id in set(job_ids)}
        if gone:
            self._change()
            self.installed -= gone
        return sorted(gone)
