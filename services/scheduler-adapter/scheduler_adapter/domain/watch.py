"""One squeue answer against the projection: the events that bring the log up to date. Pure."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import msgspec

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState, Why, WhyKind, waiting
from bwvisu_common.keyhole_client import expand_hostlist
from bwvisu_common.read_model import JobView
from scheduler_adapter.domain.slurm import Lifecycle, SqueueEntry, job_id_from_name, job_name

# slurm_state of a JobEnded for a job that left squeue without a final word.
ABSENT = "ABSENT"
# Bounded: a flood of forged squeue lines must not turn into one enormous squeue argv; the rest
# wait for a later poll.
MAX_RECHECK = 200
# What a job says again once Slurm answers after a silence, by state.
_STEADY = {JobState.RUNNING: Why(WhyKind.RUNNING), JobState.AVAILABLE: Why(WhyKind.APP_LISTENING),
           JobState.COMPLETING: Why(WhyKind.COMPLETING)}


# Structs, not dataclasses: a poll in which many jobs change makes one per job, and they build fast.
class Append(msgspec.Struct, frozen=True, gc=False):
    """Events for one job, valid only if the job's last event is still `expected_seq`."""

    job_id: str
    expected_seq: int
    events: list[ev.Event]


class Claim(msgspec.Struct, frozen=True, gc=False):
    """A tagged Slurm job that names one of our jobs: acted on only once Slurm confirms it."""

    job_id: str
    expected_seq: int
    uid: str
    entry: SqueueEntry


@dataclass
class Diff:
    appends: list[Append] = field(default_factory=list)
    # job id -> consecutive successful polls the job was missing from.
    absent: dict[str, int] = field(default_factory=dict)
    # Submitted jobs without a recorded Slurm id that a tagged Slurm job of their user may be.
    adoptions: list[Claim] = field(default_factory=list)
    # Active Slurm jobs tagged as ours whose bwvisu job is over or is another Slurm job: to cancel.
    strays: list[Claim] = field(default_factory=list)
    # Jobs whose Slurm id squeue printed twice (once forged): ask Slurm again without names.
    unsure: list[JobView] = field(default_factory=list)


def diff(
    views: Iterable[JobView],
    entries: Iterable[SqueueEntry],
    *,
    tag: str,
    absent: dict[str, int],
    absent_polls_to_finish: int,
    in_flight: Collection[str] = (),
    ambiguous: Collection[str] = frozenset(),
    cancelled: Collection[str] = frozenset(),
) -> Diff:
    """Compare one successful squeue answer with every job we know.

    A Slurm job is a bwvisu job's only if its Slurm id is the one recorded for it AND its user is
    the job's AND its name is the job's tagged name: a name alone is anyone's to choose.
    `cancelled`: Slurm ids of strays already cancelled, not to be cancelled again.
    """
    by_slurm_id = {e.slurm_id: e for e in entries}
    known = {v.job_id: v for v in views}
    prefix = job_name(tag, "")
    out = Diff()
    for view in known.values():
        if view.state == JobState.FINISHED or not view.slurm_id:
            continue
        if view.slurm_id in ambiguous:
            out.unsure.append(view)
            if view.job_id in absent:
                out.absent[view.job_id] = absent[view.job_id]
            continue
        entry = by_slurm_id.pop(view.slurm_id, None)
        if entry is None or entry.user != view.uid or entry.name != prefix + view.job_id:
            if entry is not None:
                by_slurm_id[entry.slurm_id] = entry  # someone else's: looked at as unclaimed below
            _missing(view, absent, absent_polls_to_finish, out)
        else:
            out.appends.extend(_compare(view, entry))
    for entry in by_slurm_id.values():
        _unclaimed(entry, known, tag, in_flight, out)
    out.unsure = out.unsure[:MAX_RECHECK]
    out.strays = [s for s in out.strays if s.entry.slurm_id not in cancelled]
    return out


def settle(views: Iterable[JobView], entries: Iterable[SqueueEntry]) -> list[Append]:
    """Decisions for unsure jobs from a name-free squeue answer: Slurm id and user must match."""
    by_slurm_id = {e.slurm_id: e for e in entries}
    appends: list[Append] = []
    for view in views:
        entry = by_slurm_id.get(view.slurm_id)
        if entry is not None and entry.user == view.uid:
            appends.extend(_compare(view, entry))
    return appends


def diff_error(views: Iterable[JobView], message: str) -> list[Append]:
    """squeue failed: no state changes, only a note on the jobs not told yet."""
    why = Why(WhyKind.SCHEDULER_UNREACHABLE, message)
    return [Append(v.job_id, v.seq, [ev.JobDetailsChanged.saying(v.job_id, why)])
            for v in views
            if v.state != JobState.FINISHED and v.slurm_id and v.why.kind != WhyKind.SCHEDULER_UNREACHABLE]


def _missing(view: JobView, absent: dict[str, int], threshold: int, out: Diff) -> None:
    count = absent.get(view.job_id, 0) + 1
    if count >= threshold:
        # Gone from squeue (which keeps finished jobs for a while) in enough successful polls.
        ended = ev.JobEnded(job_id=view.job_id, slurm_state=ABSENT)
        out.appends.append(Append(view.job_id, view.seq, [ended]))
    out.absent[view.job_id] = count


def _compare(view: JobView, entry: SqueueEntry) -> list[Append]:
    job_id = view.job_id
    phase = entry.lifecycle
    events: list[ev.Event] = []
    if phase is Lifecycle.PENDING:
        wanted = waiting(entry.reason)
        if view.state == JobState.SUBMITTED and view.why != wanted:
            events.append(ev.JobDetailsChanged.saying(job_id, wanted))
    elif phase in (Lifecycle.RUNNING, Lifecycle.COMPLETING):
        if view.state == JobState.SUBMITTED:
            events.append(ev.JobStarted(job_id=job_id, nodes=_nodes(entry)))
        if phase is Lifecycle.COMPLETING and view.state != JobState.COMPLETING:
            events.append(ev.JobCompleting(job_id=job_id))
        elif not events and view.why.kind is WhyKind.SCHEDULER_UNREACHABLE:
            events.append(ev.JobDetailsChanged.saying(job_id, _STEADY[view.state]))
        if entry.state == "SUSPENDED" and not events and view.why.kind is not WhyKind.SUSPENDED:
            events.append(ev.JobDetailsChanged.saying(job_id, Why(WhyKind.SUSPENDED)))
    elif phase is Lifecycle.FINISHED:
        events.append(ev.JobEnded(job_id=job_id, slurm_state=entry.state.split(" ", 1)[0],
                                  exit_code=entry.exit_code))
    else:
        wanted = Why(WhyKind.SLURM_STATE_UNKNOWN, entry.state)
        if view.why != wanted:
            events.append(ev.JobDetailsChanged.saying(job_id, wanted))
    return [Append(job_id, view.seq, events)] if events else []


def _nodes(entry: SqueueEntry) -> list[str]:
    return list(_expand(entry.nodelist))


# Many jobs share a node list (one node, or the same block of nodes): expand each once.
@functools.lru_cache(maxsize=4096)
def _expand(nodelist: str) -> tuple[str, ...]:
    try:
        return tuple(expand_hostlist(nodelist))
    except ValueError:
        return (nodelist,) if nodelist else ()


def _unclaimed(
    entry: SqueueEntry, known: dict[str, JobView], tag: str, in_flight: Collection[str], out: Diff
) -> None:
    job_id = job_id_from_name(tag, entry.name)
    if job_id is None or job_id in in_flight:
        return
    view = known.get(job_id)
    # Only a job somebody submitted through us, and only as the user it was submitted for.
    if view is None or entry.user != view.uid:
        return
    if view.state != JobState.FINISHED and not view.slurm_id:
        # Submitted, then a crash before JobQueued: the tag tells which Slurm job it became.
        out.adoptions.append(Claim(job_id, view.seq, view.uid, entry))
    elif view.slurm_id != entry.slurm_id and entry.lifecycle is not Lifecycle.FINISHED:
        # The job is over, or it is another Slurm job: an sbatch that gave no answer and reached
        # Slurm only after the job was submitted again elsewhere. Either way one too many.
        out.strays.append(Claim(job_id, view.seq, view.uid, entry))


def adopt(claim: Claim) -> Append:
    entry = claim.entry
    return Append(claim.job_id, claim.expected_seq,
                  [ev.JobAdopted(job_id=claim.job_id, slurm_id=entry.slurm_id, uid=entry.user)])
