"""Idle sessions: how long a session has gone without traffic, and what the site's policy makes of
it (a warning, then a cancel with the reason "idle"). Pure.

The traffic is the gateway agents' word (SessionActivity, folded into `JobView.last_activity`);
before any, the session counts as idle from the moment its application first answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView

IDLE = "idle"  # the reason of a cancel for idleness, in the job's details
# Idleness applies while the job holds its nodes and its application has answered once.
_IDLE_STATES = (JobState.RUNNING, JobState.AVAILABLE)


@dataclass(frozen=True)
class IdlePolicy:
    """The site's `idle-timeout` and `idle-warning`, in minutes (a timeout of 0: sessions never end
    for idleness)."""

    timeout_minutes: float = 0.0
    warning_minutes: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.timeout_minutes > 0

    @property
    def timeout(self) -> timedelta:
        return timedelta(minutes=self.timeout_minutes)


def last_activity(job: JobView) -> datetime | None:
    """The session's last traffic, or when its application first answered if later (or no traffic
    yet); None before it ever answered."""
    known = [t for t in (job.last_activity, job.available_at) if t is not None]
    return max(known) if known else None


def idle_since(job: JobView) -> datetime | None:
    """Since when the session has had no traffic; None where idleness does not apply (not yet
    answering, ending, ended)."""
    if job.state not in _IDLE_STATES or job.cancel_requested:
        return None
    return last_activity(job)


def idle_for(job: JobView, now: datetime) -> timedelta | None:
    since = idle_since(job)
    return None if since is None else max(now - since, timedelta(0))


def idle_minutes(job: JobView, now: datetime) -> int:
    """Whole minutes without traffic (0 where idleness does not apply)."""
    idle = idle_for(job, now)
    return int(idle.total_seconds() // 60) if idle is not None else 0


def ends_for_idleness_at(job: JobView, policy: IdlePolicy) -> datetime | None:
    """When the policy cancels the session if no traffic comes; None: it never will."""
    since = idle_since(job)
    if not policy.enabled or since is None:
        return None
    return since + policy.timeout


def warning(job: JobView, policy: IdlePolicy, now: datetime) -> timedelta | None:
    """The time left before an idle cancel, once within the warning's lead time; else None."""
    ends = ends_for_idleness_at(job, policy)
    if ends is None or ends - now > timedelta(minutes=policy.warning_minutes):
        return None
    return max(ends - now, timedelta(0))


def decide_idle_cancel(job: JobView, policy: IdlePolicy, now: datetime) -> list[ev.Event]:
    """The cancel of a session idle for the policy's timeout; [] for any other."""
    ends = ends_for_idleness_at(job, policy)
    if ends is None or now < ends:
        return []
    return [ev.JobCancelRequested(job_id=job.job_id, reason=IDLE)]
