"""Whether a job may have more run time: the one rule runner-api (answering the owner) and
scheduler-adapter (before it asks Slurm) both apply. Pure."""

from __future__ import annotations

from enum import StrEnum

from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView


class ExtensionRefusal(StrEnum):
    NONE = ""
    NOT_ALLOWED = "not-allowed"  # the site allows no extensions
    NOT_RUNNING = "not-running"
    TOO_MUCH = "too-much"  # beyond what the site allows in all


def extension_refusal(job: JobView, minutes: int, max_extension: int) -> tuple[ExtensionRefusal, str]:
    """Why `minutes` more may not be added to `job`, with words for its owner (NONE, "": they may)."""
    if max_extension <= 0:
        return ExtensionRefusal.NOT_ALLOWED, "this site does not allow extending sessions"
    if job.state not in (JobState.RUNNING, JobState.AVAILABLE) or not job.slurm_id or job.cancel_requested:
        return ExtensionRefusal.NOT_RUNNING, "the session is not running"
    left = max_extension - job.extended_minutes
    if left <= 0:
        return (ExtensionRefusal.TOO_MUCH,
                f"the session was extended by the most this site allows ({max_extension} minutes)")
    if not 1 <= minutes <= left:
        return (ExtensionRefusal.TOO_MUCH,
                f"between 1 and {left} more minutes may be added (the site allows {max_extension} in all)")
    return ExtensionRefusal.NONE, ""


def extension_left(job: JobView, max_extension: int) -> int:
    """Minutes that may still be added to the job (0: none)."""
    if extension_refusal(job, 1, max_extension)[0] is not ExtensionRefusal.NONE:
        return 0
    return max_extension - job.extended_minutes
