"""What becomes of a JobSubmitted and of a JobCancelRequested: the decisions, without the I/O. Pure.

The handlers ask Slurm, the user directory and the state store; these functions say what each
answer means for the job's log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bwvisu_common import events as ev
from bwvisu_common.job_facts import FailureKind, JobState, Why, WhyKind
from bwvisu_common.read_model import JobView
from bwvisu_common.reasons import SBATCH_REFUSED
from scheduler_adapter.domain.secrets import JobSecrets
from scheduler_adapter.errors import (
    CommandOutcomeUnknown,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRejected,
    TemplateError,
    UnknownUser,
)

# A JobSubmitted nobody acted on for this long is refused rather than run by surprise.
SUBMIT_DEADLINE = timedelta(minutes=10)
# What a submission may fail with on its way to sbatch; each becomes a JobSubmitFailed.
SUBMIT_FAILURES = (TemplateError, SubmitRejected, SchedulerUnavailable, CommandOutcomeUnknown)


@dataclass(frozen=True)
class Submit:
    """Go on to sbatch with these secrets; after a crashed attempt, first look for its job."""

    secrets: JobSecrets
    look_first: bool


def is_decided(view: JobView | None) -> bool:
    """Whether a JobSubmitted needs nothing more: unknown to the log, queued, or over."""
    return view is None or bool(view.slurm_id) or view.state == JobState.FINISHED


def decide_submit(view: JobView | None, event: ev.JobSubmitted, *, earlier: JobSecrets | None,
                  fresh: JobSecrets, now: datetime) -> list[ev.Event] | Submit:
    """The events a JobSubmitted gets at once ([] when nothing is to be done), or Submit.

    `earlier` are the secrets an earlier attempt stored: it may have got as far as sbatch."""
    if view is None or is_decided(view):
        return []
    if view.cancel_requested:
        return [failed(event.job_id, "cancelled before it was submitted")]
    if earlier is None and now - event.time > SUBMIT_DEADLINE:
        return [failed(event.job_id, "not submitted in time; please submit again", FailureKind.UNAVAILABLE)]
    return Submit(secrets=earlier or fresh, look_first=earlier is not None)


def found_earlier(job_id: str, slurm_id: str | None) -> list[ev.Event]:
    """The Slurm job an earlier attempt queued, found by its tag: it is the job. [] if none."""
    return [] if slurm_id is None else [ev.JobQueued(job_id=job_id, slurm_id=slurm_id)]


def user_refused(job_id: str, refusal: str | None) -> list[ev.Event]:
    """The user gate's verdict, checked where the facts are whatever runner-api asked before."""
    return [] if refusal is None else [failed(job_id, refusal, FailureKind.UNKNOWN_USER)]


def queued(job_id: str, slurm_id: str, node: str = "") -> ev.JobQueued:
    """sbatch took the job."""
    return ev.JobQueued(job_id=job_id, slurm_id=slurm_id, command_node=node)


def submit_failed(job_id: str, uid: str, exc: SchedulerError) -> ev.JobSubmitFailed:
    """One of SUBMIT_FAILURES as the job's failure."""
    if isinstance(exc, UnknownUser):
        return failed(job_id, f"no such user: {uid}", FailureKind.UNKNOWN_USER)
    if isinstance(exc, SubmitRejected):
        return failed(job_id, f"{SBATCH_REFUSED}{exc}")
    if isinstance(exc, (SchedulerUnavailable, CommandOutcomeUnknown)):
        return failed(job_id, unreachable(exc), FailureKind.UNAVAILABLE)
    return failed(job_id, str(exc))  # TemplateError: the message names what is wrong


def failed(job_id: str, reason: str, kind: FailureKind = FailureKind.REJECTED) -> ev.JobSubmitFailed:
    """The one place a JobSubmitFailed is built; `kind` says what the user can do about it."""
    return ev.JobSubmitFailed(job_id=job_id, reason=reason, kind=kind)


def unreachable(exc: Exception) -> str:
    """Why nothing could be asked of the cluster, as a job's reason or a query's error."""
    return f"the cluster cannot be reached: {exc}"


@dataclass(frozen=True)
class Cancel:
    """scancel this Slurm job as its user."""

    uid: str
    slurm_id: str


def decide_cancel(view: JobView | None) -> Cancel | None:
    """What a JobCancelRequested asks of Slurm: nothing if no Slurm job runs (already over, or not
    submitted yet: the submit decision refuses it then)."""
    if view is None or view.state == JobState.FINISHED or not view.slurm_id:
        return None
    return Cancel(uid=view.uid, slurm_id=view.slurm_id)


def cancel_failed(job_id: str, exc: SchedulerError) -> ev.JobDetailsChanged:
    """scancel refused: the job's owner sees why."""
    return ev.JobDetailsChanged.saying(job_id, Why(WhyKind.CANCEL_FAILED, str(exc)))
