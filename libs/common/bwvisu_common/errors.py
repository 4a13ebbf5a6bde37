"""The exceptions shared by every bwvisu package; adapters translate third-party errors into these."""

from __future__ import annotations


class BwvisuError(Exception):
    """Base of every error bwvisu raises on purpose."""


class ConfigError(BwvisuError):
    """The configuration file is missing, unreadable, or has a wrong or missing field."""


class DependencyUnavailable(BwvisuError):
    """A server bwvisu needs (NATS, etcd, a command node) does not answer."""


class ConcurrencyConflict(BwvisuError):
    """Another writer appended to the same job first; re-read the job and decide again."""

    def __init__(self, job_id: str, expected: int) -> None:
        super().__init__(f"job {job_id}: another event was appended after sequence {expected}")
        self.job_id = job_id
        self.expected = expected


class ReservationTaken(BwvisuError):
    """An atomic reservation (a port on a gateway) is already held by someone else."""


class InvalidInput(BwvisuError):
    """A request field that bwvisu refuses; `field` names it for the API's 400 answer."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
