"""What each runner-api request decides about a job, given the job as the read model shows it. Pure.

A refusal is an exception (NotFound, InvalidInput, SubmitFailed) that app.py maps to its status;
a decision is the events to append ([] when the job already is as asked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bwvisu_common import events as ev
from bwvisu_common.errors import InvalidInput
from bwvisu_common.job_facts import FailureKind, JobState
from bwvisu_common.read_model import JobView
from bwvisu_common.run_time import ExtensionRefusal, extension_refusal
from runner_api.errors import Conflict, NotAllowed, NotFound, SubmitFailed

MAX_LOG_LINES = 1000


def is_decided(job: JobView) -> bool:
    """Whether the scheduler answered a submission: queued (it has a Slurm id) or over."""
    return bool(job.slurm_id) or job.state == JobState.FINISHED


def submit_refusal(job: JobView) -> SubmitFailed | None:
    """For a decided job: None if Slurm took it, else why not (the scheduler's kind and reason)."""
    if job.state == JobState.FINISHED and not job.slurm_id:
        return SubmitFailed(job.failure or FailureKind.REJECTED, job.why.text)
    return None


def gave_up(job_id: str, timeout: float) -> ev.JobSubmitFailed:
    """No scheduler answered a submission in time: the job fails rather than run by surprise later."""
    return ev.JobSubmitFailed(job_id=job_id, reason=f"no scheduler answered within {timeout:.0f} s",
                              kind=FailureKind.UNAVAILABLE)


def owned(job: JobView | None, uid: str | None) -> JobView:
    """The job; with `uid`, only if that user owns it (another user's job does not exist)."""
    if job is None or (uid is not None and job.uid != uid):
        raise NotFound("no such job")
    return job


def running(job: JobView | None, uid: str | None) -> JobView:
    """The job if it runs (and, with `uid`, is theirs): cancel and client addresses need one."""
    if job is None or job.state == JobState.FINISHED or (uid is not None and job.uid != uid):
        raise NotFound("no such running job")
    return job


def decide_cancel(job: JobView) -> list[ev.Event]:
    """Cancel a running job, once."""
    return [] if job.cancel_requested else [ev.JobCancelRequested(job_id=job.job_id)]


def decide_allow_client(job: JobView, address: str) -> list[ev.Event]:
    """Let the owner's address in, once."""
    if address in job.client_addresses:
        return []
    return [ev.ClientAddressAllowed(job_id=job.job_id, address=address)]


def decide_extend(job: JobView, minutes: int, max_extension: int) -> list[ev.Event]:
    """Ask scheduler-adapter for `minutes` more run time; a refusal names what is wrong."""
    kind, reason = extension_refusal(job, minutes, max_extension)
    if kind is ExtensionRefusal.NOT_ALLOWED:
        raise NotAllowed(reason)
    if kind is ExtensionRefusal.NOT_RUNNING:
        raise Conflict(reason)
    if kind is ExtensionRefusal.TOO_MUCH:
        raise InvalidInput("minutes", reason)
    if job.extension_pending:
        raise Conflict("an extension of the session is being made; try again in a moment")
    return [ev.JobExtensionRequested(job_id=job.job_id, minutes=minutes)]


def extension_answered(request_id: str) -> Callable[[JobView], bool]:
    """Whether scheduler-adapter answered the request (or the job ended, and it never will)."""
    return lambda job: job.extension_answered == request_id or job.state == JobState.FINISHED


def extension_outcome(job: JobView, request_id: str) -> JobView:
    """The job once its extension was made; Conflict with Slurm's or the rule's reason otherwise."""
    if job.extension_answered != request_id:
        raise Conflict("the session ended before it could be extended")
    if job.extension_refusal:
        raise Conflict(job.extension_refusal)
    return job


def allowed_clients(job: JobView, decided: list[ev.Event]) -> list[str]:
    """The addresses the job allows once `decided` (from decide_allow_client) is appended."""
    added = [e.address for e in decided if isinstance(e, ev.ClientAddressAllowed)]
    return [*job.client_addresses, *added]


def check_log_lines(lines: int) -> int:
    """How many lines of a job's log a request may ask for."""
    if not 1 <= lines <= MAX_LOG_LINES:
        raise InvalidInput("lines", f"must be between 1 and {MAX_LOG_LINES}")
    return lines


def running_ids(jobs: Iterable[JobView], uid: str | None) -> list[str]:
    """The jobs not over yet (of `uid`, if given), oldest submission first."""
    ordered = sorted(jobs, key=lambda j: (j.submitted_at is None, j.submitted_at))
    return [j.job_id for j in ordered if j.state != JobState.FINISHED and (uid is None or j.uid == uid)]
