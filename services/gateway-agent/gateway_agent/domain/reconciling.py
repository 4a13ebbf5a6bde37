"""What reconciling must change: the chains and reservations the log wants vs what is there. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView
from gateway_agent.domain.checks import Limits, refusal
from gateway_agent.domain.history import Wanted, wanted
from gateway_agent.domain.rules import ForwardRule


def is_over(view: JobView | None) -> bool:
    """A job the read model does not know, or one that finished: it holds nothing on a gateway."""
    return view is None or view.state == JobState.FINISHED


def jobs_to_check(installed: Iterable[ForwardRule], views: Iterable[JobView], gateway: str) -> list[str]:
    """Jobs with rules here, and live jobs the read model puts on this gateway."""
    jobs = {r.job_id for r in installed}
    jobs |= {v.job_id for v in views if v.gateway == gateway and v.state != JobState.FINISHED}
    return sorted(jobs)


@dataclass(frozen=True)
class Restore:
    """The job should hold these forwards here (to the first of `nodes`)."""

    wanted: Wanted


@dataclass(frozen=True)
class LeaveOut:
    """The log forwards the job here, but the checks refuse it: its forwards stay out."""

    reason: str


def restore_decision(history: Sequence[ev.Event], gateway: str, limits: Limits) -> Restore | LeaveOut | None:
    """Whether a job's forwards belong on this gateway, checked like a new assignment; None: not here."""
    want = wanted(history, gateway)
    if want is None:
        return None
    why = refusal(want.nodes, want.forwards, history, limits)
    return LeaveOut(why) if why is not None else Restore(want)


@dataclass(frozen=True)
class ReconcilePlan:
    """Jobs whose rules go (and reservations with them), jobs whose rules are replaced, rules to add."""

    stale: list[str]
    mismatched: list[str]
    install: list[ForwardRule]


def plan_reconcile(installed: Sequence[ForwardRule],
                   desired: Mapping[str, Iterable[ForwardRule]]) -> ReconcilePlan:
    """Make the chains say what `desired` (job -> its concrete rules) says."""
    wanted = {job_id: set(rules) for job_id, rules in desired.items()}
    present = {r.job_id for r in installed}
    # A rule of a wanted job that differs from what the log says: all the job's rules are replaced.
    mismatched = {r.job_id for r in installed if r.job_id in wanted and r not in wanted[r.job_id]}
    return ReconcilePlan(stale=sorted(present - set(wanted)), mismatched=sorted(mismatched),
                         install=sorted(r for rules in wanted.values() for r in rules))


def owners_to_release(held: Mapping[str, str], views: Mapping[str, JobView | None]) -> list[str]:
    """Owners of reservations here whose job is over: their ports can be given back."""
    return sorted(owner for owner in set(held.values()) if is_over(views.get(owner)))
