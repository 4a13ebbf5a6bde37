"""keyhole-api's exceptions: one base, a refusal with a typed reason, and the two "ask again" cases.

None of them knows an HTTP status: app.py's exception handlers map them, in one place.
"""

from __future__ import annotations

from enum import StrEnum

from bwvisu_common.errors import BwvisuError


class KeyholeError(BwvisuError):
    """Base of every error keyhole-api raises on purpose."""


class Refusal(StrEnum):
    """Why a port request is turned down."""

    UNKNOWN_JOB = "unknown-job"  # no such job, or it has ended (its token is gone)
    NOT_AUTHENTIC = "not-authentic"  # bad or stale timestamp, bad signature
    TOO_LARGE = "too-large"  # the body is longer than the API reads
    INVALID = "invalid"  # the body is not a port request keyhole-api grants
    FOREIGN_NODES = "foreign-nodes"  # ports on nodes that are not the job's
    NOT_RUNNING = "not-running"  # the job is not (or no longer) running
    ALREADY_GRANTED = "already-granted"  # the job holds a different grant
    REPLAYED = "replayed"  # a replayed request, and no grant to answer it with


class Refused(KeyholeError):
    """A request keyhole-api turns down: `why` is the typed reason, `reason` says it in words.

    `kind` is set for refusals before the request is authenticated: those are counted
    under it and logged, never recorded as events (DESIGN.md §6).
    """

    def __init__(self, why: Refusal, reason: str, kind: str = "") -> None:
        super().__init__(reason)
        self.why = why
        self.reason = reason
        self.kind = kind


class NoCapacity(KeyholeError):
    """No live gateway could forward the ports (none alive, ranges full, agents failing)."""


class GrantPending(KeyholeError):
    """The job's grant is being made by another request; the client should ask again."""
