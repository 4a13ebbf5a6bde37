"""What the gateway does with an assignment or a new client address, and what it holds. Pure.

The handlers ask these functions, then do the I/O they name (resolve the nodes, probe the ports,
install the rules, append the events): every decision is here, every side effect there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bwvisu_common import events as ev
from bwvisu_common.assignments import is_current
from gateway_agent.domain.checks import Limits, refusal, shown
from gateway_agent.domain.history import allowed_addresses, forwarded_before
from gateway_agent.domain.rules import ForwardRule, is_ipv4, per_source


@dataclass(frozen=True)
class Install:
    """Go on: the assignment fits the job; forward it for these client addresses (as the log says)."""

    sources: list[str]


@dataclass(frozen=True)
class Refuse:
    """The assignment must not be installed: answer it with PortsUnavailable(reason)."""

    reason: str


def decide_forward(history: Sequence[ev.Event], assigned: ev.PortsAssigned,
                   limits: Limits) -> Install | Refuse | None:
    """What to do with an assignment to this gateway; None: nothing (answered, superseded, ended).

    None is what makes a replayed or redelivered assignment harmless.
    """
    if not is_current(history, assigned.event_id):
        return None
    why = refusal(assigned.nodes, assigned.forwards, history, limits)
    if why is None and assigned.moved_from and not forwarded_before(history, assigned):
        why = f"a move from {shown([assigned.moved_from])}, which never forwarded these ports for the job"
    if why is not None:
        return Refuse(f"refused: {why}")
    return Install(sources=allowed_addresses(history))


def split_sources(addresses: Iterable[str]) -> tuple[list[str], list[str]]:
    """Client addresses a rule can match (IPv4), and the ones it cannot (ignored, worth a warning)."""
    good: list[str] = []
    bad: list[str] = []
    for address in addresses:
        (good if is_ipv4(address) else bad).append(address)
    return good, bad


def port_checks(ips: Sequence[str], forwards: Sequence[ev.Forward], own_ip: str,
                moved: bool = False) -> list[tuple[str, int]]:
    """(host, port) pairs that must not answer yet: internal ports on every node, external ones here.

    Forwards `moved` from another gateway lead to an application that already listens: only the
    external ports here must be free.
    """
    checks = [] if moved else [(ip, f.internal_port) for f in forwards for ip in ips]
    return checks + [(own_ip, f.external_port) for f in forwards]


def busy_ports(checks: Sequence[tuple[str, int]], answers: Sequence[bool], forwards: Sequence[ev.Forward],
               others: Iterable[int], own_ip: str) -> list[str]:
    """What is in use: probed ports that answered, and external ports another job forwards here."""
    taken = set(others)
    busy = [f"{h}:{p}" for (h, p), is_open in zip(checks, answers, strict=True) if is_open]
    return busy + [f"{own_ip}:{f.external_port} (forwarded for another job)"
                   for f in forwards if f.external_port in taken]


def logical_rules(job_id: str, ip: str, forwards: Sequence[ev.Forward], gateway_ip: str) -> list[ForwardRule]:
    """The job's forwards to `ip` as rules matching the gateway's address, from any source."""
    return [ForwardRule(job_id=job_id, external_port=f.external_port, target_ip=ip,
                        internal_port=f.internal_port, gateway_ip=gateway_ip) for f in forwards]


def concrete_rules(rules: Sequence[ForwardRule], sources: Sequence[str], restrict: bool) -> list[ForwardRule]:
    """The rules to install: once per client address if forwards are restricted, else as they are."""
    return per_source(rules, sources) if restrict else list(rules)


def forwarded(assigned: ev.PortsAssigned, gateway: str) -> ev.PortsForwarded:
    return ev.PortsForwarded(job_id=assigned.job_id, gateway=gateway, forwards=assigned.forwards)


def unavailable(assigned: ev.PortsAssigned, gateway: str, reason: str) -> ev.PortsUnavailable:
    return ev.PortsUnavailable(job_id=assigned.job_id, gateway=gateway, forwards=assigned.forwards,
                               reason=reason)


@dataclass
class ForwardTable:
    """What this gateway forwards now, by job: its rules (any source) and the clients they accept.

    After the start-up reconcile it mirrors the chains, so a job with no entry has no rules here.
    """

    rules: dict[str, list[ForwardRule]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(rules) for rules in self.rules.values())

    def holds(self, job_id: str) -> bool:
        return job_id in self.rules

    def put(self, job_id: str, rules: list[ForwardRule], sources: list[str]) -> None:
        self.rules[job_id], self.sources[job_id] = rules, sources

    def drop(self, job_id: str) -> None:
        self.rules.pop(job_id, None)
        self.sources.pop(job_id, None)

    def is_new_client(self, job_id: str, address: str) -> bool:
        """True if the job is forwarded here and does not accept `address` yet."""
        return self.holds(job_id) and address not in self.sources.get(job_id, [])

    def add_client(self, job_id: str, address: str) -> None:
        self.sources.setdefault(job_id, []).append(address)

    def keys(self) -> set[tuple[str, int]]:
        """(job, external port) of every forward."""
        return {(job_id, r.external_port) for job_id, rules in self.rules.items() for r in rules}
