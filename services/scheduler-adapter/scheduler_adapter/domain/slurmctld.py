"""What Slurm's answers say about slurmctld's load, the back-off that follows, and scancel's answer
for each job of a batch. Pure: the caller passes the time."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# slurmctld overloaded or away: asking again at once makes it worse. Slurm's own words
# (slurm_strerror and the clients' prefixes), lower case.
_BUSY = ("socket timed out", "resource temporarily unavailable", "unable to contact slurm controller",
         "temporarily unable to accept", "connection refused", "slurm_load_jobs error")
# Words that make a "slurm_load_jobs error" an answer about the job, not about the load.
_NOT_BUSY = ("invalid job id",)
# scancel: "scancel: error: Kill job error on job id 17: Invalid job id specified"
_JOB_LINE = re.compile(r"job id (\d+(?:_\d+)?)\b:?\s*(.*)", re.IGNORECASE)
_GONE = ("already completing or completed", "invalid job id")


def is_busy(complaint: str) -> bool:
    """Whether a failed Slurm command's words say slurmctld is overloaded or unreachable."""
    lowered = complaint.lower()
    return any(m in lowered for m in _BUSY) and not any(m in lowered for m in _NOT_BUSY)


def cancel_complaints(text: str, slurm_ids: Sequence[str]) -> dict[str, str | None]:
    """For each job of one `scancel id...` that failed: what keeps it from counting as cancelled,
    None when it was cancelled or had ended already. A complaint naming no job applies to every job
    that no line names."""
    per_job: dict[str, str] = {}
    general: list[str] = []
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or "audit plugin" in line:  # sudo's noise
            continue
        named = _JOB_LINE.search(line)
        if named is not None and named.group(1) in slurm_ids:
            per_job[named.group(1)] = named.group(2) or line
        else:
            general.append(line)
    fallback = "; ".join(general)[:500] or None
    outcome: dict[str, str | None] = {}
    for slurm_id in slurm_ids:
        complaint = per_job.get(slurm_id, fallback)
        gone = complaint is not None and any(m in complaint.lower() for m in _GONE)
        outcome[slurm_id] = None if gone else complaint
    return outcome


@dataclass
class Backoff:
    """How long to leave slurmctld alone: `first` seconds after a busy answer, doubling with each
    busy answer to a command sent after the last pause ended, up to `most`; an answer resets it."""

    first: float = 0.5
    most: float = 30.0
    delay: float = 0.0
    until: float = 0.0

    def busy(self, now: float) -> None:
        if now < self.until:
            return  # sent before the pause began: the pause already answers this load
        self.delay = min(self.most, self.delay * 2 if self.delay else self.first)
        self.until = now + self.delay

    def answered(self) -> None:
        self.delay = 0.0

    def pause(self, now: float) -> float:
        """Seconds to wait before the next command to slurmctld."""
        return max(0.0, self.until - now)
