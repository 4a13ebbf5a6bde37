"""The exceptions of scheduler-adapter; adapters translate asyncssh and Slurm failures into these."""

from __future__ import annotations

from bwvisu_common.errors import BwvisuError, DependencyUnavailable


class SchedulerError(BwvisuError):
    """Base of every error scheduler-adapter raises on purpose."""


class SchedulerUnavailable(SchedulerError, DependencyUnavailable):
    """No command node answered; nothing was run."""


class CommandOutcomeUnknown(SchedulerError):
    """A command was sent but its connection died before it answered: it may or may not have run."""


class SubmitRejected(SchedulerError):
    """sbatch refused the job (bad partition, time limit, a reserved user, ...)."""


class UnknownUser(SubmitRejected):
    """The cluster has no such user."""


class TemplateError(SchedulerError):
    """A template cannot become a batch script (missing, a variable not given, a bad directive)."""


class SubmissionBusy(SchedulerError):
    """Another replica is submitting the job right now; the event is handled again later."""
