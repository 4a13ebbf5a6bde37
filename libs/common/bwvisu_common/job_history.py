"""One job's history for operators: each event in words, and what the job came to. Pure.

`bwvisu job <id>` and the portal's admin history page show the same lines. Each event type is
worded field by field (never dumped whole): events carry no tokens or session secrets (those
live in etcd only), and an event type added later shows as its name until it is worded here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

import msgspec

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView, fold

# What a job id can be (ours are 16 hex digits): anything else never reaches a NATS subject filter,
# where a dot or a wildcard would read other jobs' events.
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_job_id(text: str) -> bool:
    return _JOB_ID.fullmatch(text) is not None


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a job's history as an operator reads it."""

    seq: int  # the stream sequence: the order of everything
    time: datetime
    kind: str  # the event's name (JobQueued)
    text: str  # what it says, in words


class History(msgspec.Struct, frozen=True, kw_only=True):
    """A job's events in order and the view they fold to."""

    job: JobView
    entries: list[Entry]


def history(events: Iterable[tuple[int, ev.AnyEvent]]) -> History | None:
    """The history of one job's events (stream order); None for no events."""
    ordered = sorted(events, key=lambda pair: pair[0])
    job = fold(list(ordered))
    if job is None:
        return None
    entries = [Entry(seq=seq, time=e.time, kind=type(e).__name__, text=describe(e)) for seq, e in ordered]
    return History(job=job, entries=entries)


def describe(event: ev.AnyEvent) -> str:
    """What `event` says, in words; only fields an operator may see."""
    match event:
        case ev.JobSubmitted(uid=uid, template_name=name, variables=variables):
            shown = " ".join(f"{k}={v}" for k, v in sorted(variables.items()))
            return f"{uid} submitted {name}" + (f" ({shown})" if shown else "")
        case ev.JobQueued(slurm_id=slurm_id, command_node=node):
            return f"queued as Slurm job {slurm_id}" + (f" via {node}" if node else "")
        case ev.JobAdopted(slurm_id=slurm_id):
            return f"adopted Slurm job {slurm_id}"
        case ev.JobSubmitFailed(reason=reason, kind=kind):
            return f"submission failed ({kind}): {reason}"
        case ev.JobStarted(nodes=nodes):
            return f"started on {', '.join(nodes)}"
        case ev.JobDetailsChanged(details=details):
            return details
        case ev.JobCompleting():
            return "completing"
        case ev.JobEnded(slurm_state=state, exit_code=code):
            return f"ended: {state}" + ("" if code is None else f", exit code {code}")
        case ev.JobCancelRequested(reason=reason):
            return "cancel requested" + (f": {reason}" if reason else "")
        case ev.PortsRequested(count=count, nodes=nodes):
            return f"{count} port(s) requested for {', '.join(nodes)}"
        case ev.PortsRefused(reason=reason):
            return f"port request refused: {reason}"
        case ev.PortsAssigned(gateway=gateway, forwards=forwards, moved_from=moved):
            moving = f" (moved from {moved})" if moved else ""
            return f"{gateway} assigned {forwards_text(forwards)}{moving}"
        case ev.PortsForwarded(gateway=gateway, forwards=forwards):
            return f"{gateway} forwards {forwards_text(forwards)}"
        case ev.PortsUnavailable(gateway=gateway, forwards=forwards, reason=reason):
            why = f": {reason}" if reason else ""
            return f"{gateway} could not forward {forwards_text(forwards)}{why}"
        case ev.PortOpen(external_port=port, gateway=gateway):
            return f"port {port} answers" + (f" (probed by {gateway})" if gateway else "")
        case ev.PortClosed(external_port=port, gateway=gateway):
            return f"port {port} stopped answering" + (f" (probed by {gateway})" if gateway else "")
        case ev.ForwardsRemoved(gateway=gateway):
            return f"{gateway} removed the job's forwards"
        case ev.ClientAddressAllowed(address=address):
            return f"owner connected from {address}"
        case ev.JobExtensionRequested(minutes=minutes):
            return f"owner asked for {minutes} more minutes"
        case ev.JobExtended(minutes=minutes, time_limit=limit):
            return f"extended by {minutes} minutes: time limit {limit} minutes"
        case ev.JobExtensionRefused(reason=reason):
            return f"extension refused: {reason}"
        case ev.JobTimeLimitRead(time_limit=limit):
            return f"Slurm's time limit is {limit} minutes"
        case ev.SessionActivity(gateway=gateway, last_activity=at):
            return f"traffic through {gateway} at {at.strftime('%Y-%m-%d %H:%M:%S UTC')}"
    return type(event).__name__


def forwards_text(forwards: Iterable[ev.Forward]) -> str:
    return ", ".join(f"{f.external_port}->{f.internal_port}" for f in forwards) or "no ports"


def outcome(job: JobView) -> str:
    """How the job ended, in words; "" while it has not."""
    if job.state != JobState.FINISHED:
        return ""
    cancelled = " after a cancel request" if job.cancel_requested else ""
    return f"{job.details}{cancelled}" if job.details else f"finished{cancelled}"


def age(since: datetime | None, now: datetime) -> str:
    """A short age ("45s", "12m", "3h", "2d") for tables; "-" when unknown."""
    if since is None:
        return "-"
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
