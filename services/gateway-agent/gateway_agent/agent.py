"""GatewayAgent: forwards assigned ports, probes them, removes them when jobs end, reconciles."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bwvisu_common import events as ev
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.projections import AVAILABLE, RUNNING
from bwvisu_common.projector import LiveJobs
from bwvisu_common.state_keys import NODE_PORTS, gateway_ports, grant_key
from gateway_agent.domain.checks import Limits, refusal, shown
from gateway_agent.domain.history import allowed_addresses, is_current, wanted
from gateway_agent.domain.rules import ForwardRule, is_ipv4, per_source
from gateway_agent.errors import FirewallError
from gateway_agent.ports import Firewall, PortProber

log = logging.getLogger(__name__)

Resolver = Callable[[str], Awaitable[str]]


async def resolve_ipv4(host: str) -> str:
    """A node name (or address) to its IPv4 address."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET,
                                                         type=socket.SOCK_STREAM)
    return str(infos[0][4][0])


@dataclass
class Timing:
    fast_probe: float = 0.15  # while a job waits for its application
    slow_probe: float = 2.0  # once it answers
    probe_timeout: float = 0.5


class GatewayAgent:
    """Everything one gateway does; `handle` takes every event, the loops run beside it."""

    def __init__(self, name: str, own_ip: str, events: EventStore, state: StateStore, jobs: LiveJobs,
                 firewall: Firewall, prober: PortProber, resolve: Resolver = resolve_ipv4,
                 timing: Timing | None = None, *, external_ip: str | None = None,
                 limits: Limits | None = None, restrict_sources: bool = False) -> None:
        self.name = name
        self._own_ip = own_ip
        self._external_ip = external_ip or own_ip  # every DNAT matches it (-d)
        self._limits = limits or Limits()
        self._restrict = restrict_sources  # forwards only from the owner's client addresses
        self._events = events
        self._state = state
        self._jobs = jobs
        self._firewall = firewall
        self._prober = prober
        self._resolve = resolve
        self._timing = timing or Timing()
        self._lock = asyncio.Lock()  # rule changes and reconciling never interleave
        self._forwards: dict[str, list[ForwardRule]] = {}  # what is forwarded, by job (any source)
        self._sources: dict[str, list[str]] = {}  # client addresses each forwarded job allows
        self._open: dict[tuple[str, int], bool] = {}  # last reported state of each external port
        self._last_probe: dict[tuple[str, int], float] = {}

    @property
    def forward_count(self) -> int:
        return sum(len(f) for f in self._forwards.values())

    async def handle(self, _seq: int, event: ev.AnyEvent) -> None:
        if isinstance(event, ev.PortsAssigned) and event.gateway == self.name:
            async with self._lock:
                await self._forward(event)
        elif isinstance(event, (ev.JobEnded, ev.JobCancelRequested)):
            async with self._lock:
                await self._remove(event.job_id)
        elif isinstance(event, ev.ClientAddressAllowed) and self._restrict:
            async with self._lock:
                await self._allow(event.job_id, event.address)

    async def _history(self, job_id: str) -> list[ev.AnyEvent]:
        return [event for _, event in await self._events.read_job(job_id)]

    # --- forwarding -------------------------------------------------------------------------

    async def _forward(self, assigned: ev.PortsAssigned) -> None:
        job_id = assigned.job_id
        history = await self._history(job_id)
        if not is_current(history, assigned.event_id):
            return  # answered already, given up on, or superseded
        why = refusal(assigned.nodes, assigned.forwards, history, self._limits)
        if why is not None:
            log.warning("job %s: refused assignment %s: %s", job_id, assigned.event_id, why)
            await self._unavailable(assigned, f"refused: {why}")
            return
        try:
            ips = [await self._resolve(node) for node in assigned.nodes]
        except OSError as exc:
            await self._unavailable(assigned, f"cannot resolve the job's nodes: {exc}")
            return
        busy = await self._busy(job_id, ips, assigned.forwards)
        if busy:
            await self._unavailable(assigned, "in use: " + ", ".join(busy))
            return
        rules = self._logical(job_id, ips[0], assigned.forwards)
        sources = self._valid_sources(job_id, allowed_addresses(history))
        try:
            await self._firewall.install(self._concrete(rules, sources))
        except FirewallError as exc:
            await self._unavailable(assigned, str(exc))
            return
        self._forwards[job_id] = rules
        self._sources[job_id] = sources
        await self._events.append([ev.PortsForwarded(job_id=job_id, gateway=self.name,
                                                     forwards=assigned.forwards)])
        log.info("job %s: forwarded %s", job_id,
                 ", ".join(f"{r.external_port}->{r.target_ip}:{r.internal_port}" for r in rules))

    async def _busy(self, job_id: str, ips: list[str], forwards: Sequence[ev.Forward]) -> list[str]:
        """Ports something already uses: internal ones on any node, external ones here."""
        others = {r.external_port for r in await self._firewall.rules() if r.job_id != job_id}
        checks = [(ip, f.internal_port) for f in forwards for ip in ips]
        checks += [(self._own_ip, f.external_port) for f in forwards]
        answers = await asyncio.gather(*(self._prober.is_open(h, p, self._timing.probe_timeout)
                                         for h, p in checks))
        busy = [f"{h}:{p}" for (h, p), is_open in zip(checks, answers, strict=True) if is_open]
        return busy + [f"{self._own_ip}:{f.external_port} (forwarded for another job)"
                       for f in forwards if f.external_port in others]

    def _logical(self, job_id: str, ip: str, forwards: Sequence[ev.Forward]) -> list[ForwardRule]:
        return [ForwardRule(job_id=job_id, external_port=f.external_port, target_ip=ip,
                            internal_port=f.internal_port, gateway_ip=self._external_ip) for f in forwards]

    def _concrete(self, rules: Sequence[ForwardRule], sources: Sequence[str]) -> list[ForwardRule]:
        return per_source(rules, sources) if self._restrict else list(rules)

    @staticmethod
    def _valid_sources(job_id: str, addresses: Sequence[str]) -> list[str]:
        good = [a for a in addresses if is_ipv4(a)]
        if len(good) != len(addresses):
            log.warning("job %s: ignored client address(es) that are not IPv4: %s", job_id,
                        shown(a for a in addresses if a not in good))
        return good

    async def _allow(self, job_id: str, address: str) -> None:
        """A new client address of the owner: its rules join the job's (if forwarded here)."""
        if job_id not in self._forwards or address in self._sources.get(job_id, []):
            return
        if not self._valid_sources(job_id, [address]):
            return
        try:
            await self._firewall.install(self._concrete(self._forwards[job_id], [address]))
        except FirewallError as exc:
            log.error("job %s: cannot allow client %s: %s", job_id, address, exc)
            return
        self._sources.setdefault(job_id, []).append(address)
        log.info("job %s: forwards accept %s", job_id, address)

    async def _unavailable(self, assigned: ev.PortsAssigned, reason: str) -> None:
        log.info("job %s: ports unavailable: %s", assigned.job_id, reason)
        await self._events.append([ev.PortsUnavailable(job_id=assigned.job_id, gateway=self.name,
                                                       forwards=assigned.forwards, reason=reason)])

    async def _remove(self, job_id: str) -> None:
        # After the start-up reconcile the cache mirrors the chains: no iptables call for the
        # many jobs that never had a forward here.
        removed = await self._firewall.remove_jobs([job_id]) if job_id in self._forwards else []
        self._forwards.pop(job_id, None)
        self._sources.pop(job_id, None)
        released = await self._release(job_id)
        # No event for a job the log does not know: it would make one up.
        if (removed or released) and self._jobs.get(job_id) is not None:
            await self._events.append([ev.ForwardsRemoved(job_id=job_id, gateway=self.name)])
            log.info("job %s: %d forward(s) removed, %d reservation(s) released", job_id,
                     len(removed), released)

    async def _release(self, job_id: str, held: dict[str, str] | None = None) -> int:
        """Give back the job's ports on this gateway, and with them its node ports and grant."""
        held = held if held is not None else await self._state.reservations(gateway_ports(self.name))
        mine = [k for k, owner in held.items() if owner == job_id]
        if not mine:
            return 0
        nodes = await self._state.reservations(NODE_PORTS)
        keys = mine + [k for k, owner in nodes.items() if owner == job_id] + [grant_key(job_id)]
        await self._state.release_job(job_id, keys)
        return len(mine)

    async def start(self) -> None:
        """Hook the chains in and reconcile them with the log (the read model must be caught up)."""
        await self._firewall.ensure_chains()
        await self.reconcile()

    # --- reconciling ------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Make the chains say what the log says: stale rules out, missing rules back in."""
        async with self._lock:
            installed = await self._firewall.rules()
            jobs = {r.job_id for r in installed}
            jobs |= {j.job_id for j in self._jobs.all() if j.gateway == self.name and j.state != "finished"}
            desired: dict[str, list[ForwardRule]] = {}  # what each job should have, any source
            sources: dict[str, list[str]] = {}
            for job_id in sorted(jobs):
                rules, allowed = await self._desired(job_id)
                if rules:
                    desired[job_id], sources[job_id] = rules, allowed
            concrete = {j: set(self._concrete(rules, sources[j])) for j, rules in desired.items()}
            not_wanted = sorted({r.job_id for r in installed} - set(desired))
            self._forwards = {r.job_id: [] for r in installed}  # so that _remove takes them out
            for job_id in not_wanted:
                await self._remove(job_id)
            # Rules of a wanted job that differ from what the log says: replace them.
            mismatched = sorted({r.job_id for r in installed
                                 if r.job_id in desired and r not in concrete[r.job_id]})
            if mismatched:
                await self._firewall.remove_jobs(mismatched)
            await self._firewall.install(sorted(r for rules in concrete.values() for r in rules))
            self._forwards, self._sources = desired, sources
            await self._release_finished()
            log.info("reconciled: %d job(s) forwarded, %d stale job(s) removed", len(desired),
                     len(not_wanted))

    async def _desired(self, job_id: str) -> tuple[list[ForwardRule], list[str]]:
        """The job's forwards as the log says (checked like a new assignment), and its clients."""
        view = self._jobs.get(job_id)
        if view is None or view.state == "finished":
            return [], []
        history = await self._history(job_id)
        want = wanted(history, self.name)
        if want is None:
            return [], []
        why = refusal(want.nodes, want.forwards, history, self._limits)
        if why is not None:
            log.warning("job %s: its forwards stay out: %s", job_id, why)
            return [], []
        try:
            ip = await self._resolve(want.nodes[0])
        except OSError:
            log.warning("job %s: cannot resolve %s; its forwards stay out", job_id, shown(want.nodes[:1]))
            return [], []
        return (self._logical(job_id, ip, want.forwards),
                self._valid_sources(job_id, allowed_addresses(history)))

    async def _release_finished(self) -> None:
        held = await self._state.reservations(gateway_ports(self.name))
        for job_id in sorted(set(held.values())):
            view = self._jobs.get(job_id)
            if view is None or view.state == "finished":
                if await self._release(job_id, held):
                    log.info("job %s: released reservations of a finished job", job_id)

    # --- probing ----------------------------------------------------------------------------

    async def probe_once(self) -> None:
        """Probe every forward that is due; report ports that opened or closed."""
        now = time.monotonic()
        due = []
        for job_id, rules in list(self._forwards.items()):
            view = self._jobs.get(job_id)
            if view is None or view.state not in (RUNNING, AVAILABLE):
                continue
            for rule in rules:
                key = (job_id, rule.external_port)
                is_open = self._open.get(key)
                if is_open is None:
                    is_open = any(s.open for s in view.services if s.external_port == rule.external_port)
                    self._open[key] = is_open
                interval = self._timing.slow_probe if is_open else self._timing.fast_probe
                if now - self._last_probe.get(key, 0.0) >= interval - 0.01:
                    self._last_probe[key] = now
                    due.append((key, rule))
        answers = await asyncio.gather(*(self._prober.is_open(r.target_ip, r.internal_port,
                                                              self._timing.probe_timeout)
                                         for _, r in due))
        for (key, _), is_open in zip(due, answers, strict=True):
            if is_open != self._open.get(key):
                self._open[key] = is_open
                cls = ev.PortOpen if is_open else ev.PortClosed
                await self._events.append([cls(job_id=key[0], external_port=key[1], gateway=self.name)])
                log.info("job %s: port %d %s", key[0], key[1], "open" if is_open else "closed")
        live = {(j, r.external_port) for j, rules in self._forwards.items() for r in rules}
        for key in set(self._open) - live:
            self._open.pop(key, None)
            self._last_probe.pop(key, None)

    async def probe_forever(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:  # a failed append or probe must not stop probing
                log.exception("probing failed; going on")
            await asyncio.sleep(self._timing.fast_probe)
