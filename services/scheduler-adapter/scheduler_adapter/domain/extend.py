"""More run time for a running job, on its owner's word: whether it may have it, and the limit. Pure.

The time limit is set as a number of minutes, never as Slurm's `+N`: setting the same limit again
(a redelivered request) adds nothing. The first extension of a job reads Slurm's limit as its base
and records it (JobTimeLimitRead) before raising it; after that the base is the recorded limit
(`JobView.time_limit`).
"""

from __future__ import annotations

import msgspec

from bwvisu_common import events as ev
from bwvisu_common.read_model import JobView
from bwvisu_common.run_time import extension_refusal

# Slurm's words for a job without a time limit.
_UNLIMITED = ("UNLIMITED", "INFINITE", "NOT_SET", "N/A")


class Extend(msgspec.Struct, frozen=True, kw_only=True):
    """Set the Slurm job's limit to `base + minutes`; `base` None: read Slurm's limit first."""

    slurm_id: str
    minutes: int
    base: int | None = None


def decide_extension(job: JobView | None, request: ev.JobExtensionRequested,
                     max_extension: int) -> Extend | ev.JobExtensionRefused | None:
    """What to do about `request`; None when it was answered already (or is not the job's)."""
    if job is None or job.extension_pending != request.event_id:
        return None
    _, refusal = extension_refusal(job, request.minutes, max_extension)
    if refusal:
        return refused(request, refusal)
    return Extend(slurm_id=job.slurm_id, minutes=request.minutes, base=job.time_limit or None)


def refused(request: ev.JobExtensionRequested, reason: str) -> ev.JobExtensionRefused:
    return ev.JobExtensionRefused(job_id=request.job_id, request_id=request.event_id, reason=reason)


def extended(request: ev.JobExtensionRequested, time_limit: int) -> ev.JobExtended:
    return ev.JobExtended(job_id=request.job_id, request_id=request.event_id, minutes=request.minutes,
                          time_limit=time_limit)


def parse_time_limit(text: str) -> int | None:
    """Slurm's time limit as squeue prints it (`5:00`, `1:30:00`, `2-00:00:00`) in whole minutes;
    None for no limit. ValueError for anything else."""
    text = text.strip()
    if text.upper() in _UNLIMITED:
        return None
    days, dash, clock = text.rpartition("-")
    parts = clock.split(":")
    words = [*parts, days] if dash else parts
    if len(parts) > 3 or not all(w.isascii() and w.isdigit() for w in words):
        raise ValueError(f"not a Slurm time limit: {text[:40]!r}")
    numbers = [int(p) for p in parts]
    if days:  # days-hours[:minutes[:seconds]]
        numbers += [0] * (3 - len(numbers))
        hours, minutes, seconds = numbers
        hours += int(days) * 24
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
    elif len(numbers) == 2:
        hours, (minutes, seconds) = 0, numbers
    else:
        hours, minutes, seconds = 0, numbers[0], 0
    return hours * 60 + minutes + (1 if seconds else 0)
