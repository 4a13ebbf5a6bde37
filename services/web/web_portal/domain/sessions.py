"""A job as a researcher sees it: a session card in plain words. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec

from bwvisu_common.idle import IDLE, IdlePolicy, idle_minutes, idle_since, warning
from bwvisu_common.job_facts import JobState, WhyKind, render
from bwvisu_common.read_model import JobView
from bwvisu_common.reasons import client_why
from bwvisu_common.run_time import extension_left
from web_portal.domain.bundles import Bundle

STATE_WORDS = {
    JobState.SUBMITTED: "Waiting in the queue",
    JobState.RUNNING: "Starting…",
    JobState.AVAILABLE: "Ready",
    JobState.COMPLETING: "Ending…",
    JobState.FINISHED: "Finished",
}
# The states in which the job holds its nodes (its run time counts).
_ON_NODES = (JobState.RUNNING, JobState.AVAILABLE, JobState.COMPLETING)

# Slurm's pending reasons (squeue %r) in words; anything else is shown as Slurm says it.
REASONS = {
    "Resources": "the nodes it needs are busy",
    "Priority": "other jobs are ahead of it",
    "Dependency": "it waits for another job",
    "BeginTime": "its start time has not come yet",
    "ReqNodeNotAvail": "the nodes it needs are not available",
    "JobHeldUser": "it is held",
    "JobHeldAdmin": "an administrator holds it",
    "PartitionDown": "the partition is down",
    "PartitionNodeLimit": "it asks for more nodes than the partition has",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as allowed",
    "AssocGrpCpuLimit": "your group uses all the cores it may",
}


class Card(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the sessions page shows about one session."""

    job_id: str
    uid: str
    app: str
    icon: str
    state: str
    words: str  # the state in words
    why: str = ""  # why it waits, or how it ended
    time_left: str = ""
    ends_at: str = ""  # ISO time, for the page's own countdown
    can_connect: bool = False  # Connect goes through the portal, which fetches the URL with its secret
    can_cancel: bool = False
    submitted_at: str = ""  # ISO time
    submitted_text: str = ""  # the same, for people
    nodes: str = ""
    clients: str = ""  # the client addresses the owner connected from (the admin page shows them)
    trouble: bool = False  # it failed, or cannot be trusted now: screen readers are told at once
    ending_soon: bool = False  # its end is within the warning time: highlighted, with words
    warn_seconds: int = 0  # how long before its end it warns (the page's countdown turns it on)
    extend_options: list[int] = []  # minutes Extend may add now ([] : no Extend button)
    relaunch_url: str = ""  # Launch again: the app's form with this session's values
    idle: str = ""  # "idle for N min", once a minute without traffic
    idle_since: str = ""  # ISO time (the card's data-since)
    idle_warning: str = ""  # the site's idle-timeout is near: "will be ended in N min for inactivity"


# What Extend offers, in minutes, as far as the site's maximum leaves room.
EXTEND_STEPS = (15, 30, 60)


def card(job: JobView, bundle: Bundle | None, now: datetime, policy: IdlePolicy | None = None, *,
         warning: timedelta = timedelta(minutes=10), max_extension: int = 0) -> Card:
    ends = end_time(job, bundle)
    since = idle_since(job)
    minutes = idle_minutes(job, now)
    return Card(
        job_id=job.job_id, uid=job.uid,
        app=bundle.title if bundle else job.template_name, icon=bundle.icon if bundle else "app",
        state=job.state.value, words=state_words(job), why=why(job),
        time_left=time_left(job, bundle, ends, now), ends_at=ends.isoformat() if ends else "",
        can_connect=can_connect(job, bundle),
        can_cancel=job.state != JobState.FINISHED and not job.cancel_requested,
        submitted_at=job.submitted_at.isoformat(timespec="seconds") if job.submitted_at else "",
        submitted_text=job.submitted_at.strftime("%Y-%m-%d %H:%M UTC") if job.submitted_at else "",
        nodes=", ".join(job.nodes), clients=", ".join(job.client_addresses),
        trouble=trouble(job),
        ending_soon=ending_soon(job, ends, now, warning), warn_seconds=int(warning.total_seconds()),
        extend_options=extend_options(job, max_extension), relaunch_url=relaunch_url(job, bundle),
        idle=f"idle for {minutes} min" if minutes >= 1 else "",
        idle_since=since.isoformat(timespec="seconds") if since is not None else "",
        idle_warning=idle_warning(job, policy or IdlePolicy(), now),
    )


def ending_soon(job: JobView, ends: datetime | None, now: datetime, warning: timedelta) -> bool:
    """Whether a running session's end is within `warning` (the owner should save or extend)."""
    if ends is None or warning <= timedelta(0):  # web.ending-warning 0: never
        return False
    return job.state in (JobState.RUNNING, JobState.AVAILABLE) and ends - now <= warning


def extend_options(job: JobView, max_extension: int) -> list[int]:
    """The minutes Extend may add to the session now; [] when it may not be extended."""
    left = extension_left(job, max_extension)
    if left <= 0 or job.extension_pending:
        return []
    return [m for m in EXTEND_STEPS if m <= left] or [left]


def relaunch_url(job: JobView, bundle: Bundle | None) -> str:
    """Launch again: the form of the session's app, filled with its values (a finished session's)."""
    if job.state != JobState.FINISHED or bundle is None:
        return ""
    return f"/apps/{bundle.name}?from={job.job_id}"


def idle_warning(job: JobView, policy: IdlePolicy, now: datetime) -> str:
    """The owner's warning once an idle cancel is near ("" before, and with no idle-timeout)."""
    left = warning(job, policy, now)
    if left is None:
        return ""
    minutes = -(-int(left.total_seconds()) // 60)  # rounded up: "in 0 min" only at the limit
    return f"will be ended in {minutes} min for inactivity"


def state_words(job: JobView) -> str:
    if job.state == JobState.FINISHED:
        if job.failure or job.why.kind is WhyKind.SUBMIT_FAILED:
            return "Could not start"
        if job.cancel_requested:
            return "Cancelled (idle)" if job.cancel_reason == IDLE else "Cancelled"
        if job.exit_code not in (None, 0):
            return "Ended with an error"
        return "Finished"
    if job.cancel_requested:
        return "Cancelling (idle)…" if job.cancel_reason == IDLE else "Cancelling…"
    return STATE_WORDS.get(job.state, job.state)


def trouble(job: JobView) -> bool:
    """Whether the card tells of a failure (or that it may be out of date), not of progress."""
    if job.why.kind in (WhyKind.SCHEDULER_UNREACHABLE, WhyKind.PORTS_REFUSED):
        return True
    return job.state == JobState.FINISHED and state_words(job) in ("Could not start", "Ended with an error")


def why(job: JobView) -> str:
    """A short reason next to the state: why it waits, or how it ended."""
    kind = job.why.kind
    if job.cancel_reason == IDLE:
        return "idle: no traffic reached it for the site's idle limit."
    if kind is WhyKind.SCHEDULER_UNREACHABLE:
        return "The cluster's scheduler does not answer at the moment; this may be out of date."
    if job.state == JobState.SUBMITTED and kind is WhyKind.QUEUED_WAITING and job.why.text:
        reason = job.why.text
        return f"Slurm says: {REASONS.get(reason, reason)}."
    if job.state == JobState.RUNNING and job.services:
        return "Waiting for the application to answer."
    if job.state == JobState.FINISHED:
        if kind is WhyKind.SUBMIT_FAILED:
            # Without internal host names or sbatch's raw words (the history keeps those).
            return client_why(job.failure, job.why).text
        if job.exit_code not in (None, 0) and not job.cancel_requested:
            # A cancelled job's non-zero code is Slurm's signal, not the application failing.
            return f"Exit code {job.exit_code}; the log below may say why."
    if kind is WhyKind.PORTS_REFUSED:
        return render(job.why)
    return ""


def runtime_minutes(job: JobView, bundle: Bundle | None) -> int | None:
    if bundle is None or not bundle.runtime_field:
        return None
    value = job.variables.get(bundle.runtime_field, "")
    return int(value) if value.isdigit() else None


def end_time(job: JobView, bundle: Bundle | None) -> datetime | None:
    """When Slurm will stop the job: its start (else submission, an early bound) plus its run time,
    or plus the time limit bwvisu set when it extended the job."""
    minutes = job.time_limit or runtime_minutes(job, bundle)
    start = job.started_at or job.submitted_at
    if minutes is None or start is None or job.state not in _ON_NODES:
        return None
    return start + timedelta(minutes=minutes)


def time_left(job: JobView, bundle: Bundle | None, ends: datetime | None, now: datetime) -> str:
    if job.state == JobState.SUBMITTED:
        minutes = runtime_minutes(job, bundle)
        return f"Runs for {duration(minutes * 60)} once started" if minutes else ""
    if ends is None:
        return ""
    return f"{duration((ends - now).total_seconds())} left"


def duration(seconds: float) -> str:
    if seconds < 60:
        return "less than a minute"
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def can_connect(job: JobView, bundle: Bundle | None) -> bool:
    """Whether Connect has somewhere to go: the application listens and its bundle has a URL.

    The URL itself (it carries the session secret) is never in a card: the Connect route
    fetches it for the owner when pressed."""
    return (job.state == JobState.AVAILABLE and bundle is not None and bool(bundle.connect_url)
            and bool(job.services))


def visible(job: JobView, now: datetime, keep_minutes: float) -> bool:
    """Unfinished sessions, and finished ones for `keep_minutes` after they ended."""
    if job.state != JobState.FINISHED:
        return True
    ended = job.updated_at or job.submitted_at
    return ended is not None and now - ended <= timedelta(minutes=keep_minutes)


def sessions_of(
    jobs: Iterable[JobView], uid: str | None, now: datetime, keep_minutes: float
) -> list[JobView]:
    """The jobs to list (one user's, or everyone's for uid None), newest first."""
    mine = [j for j in jobs if (uid is None or j.uid == uid) and j.uid and visible(j, now, keep_minutes)]
    return sorted(mine, key=lambda j: j.submitted_at or now, reverse=True)
