"""Errors of runner-api; app.py maps each to its HTTP status in one place."""

from __future__ import annotations

from bwvisu_common.errors import BwvisuError
from bwvisu_common.job_facts import FailureKind


class RunnerApiError(BwvisuError):
    """Base of every error runner-api raises on purpose."""


class NotFound(RunnerApiError):
    """No such job (or no such running job, for a cancel), or no such user."""


class SubmitFailed(RunnerApiError):
    """Slurm did not take the job; `kind` and `reason` are its JobSubmitFailed's."""

    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class NotAllowed(RunnerApiError):
    """The site does not allow what was asked (e.g. extending sessions)."""


class Conflict(RunnerApiError):
    """The job is not in a state that allows what was asked (yet, or any more)."""
