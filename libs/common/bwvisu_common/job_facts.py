"""Typed facts about a job: its state, why a submission failed, and why it is where it is.

Events and the read model carry these values; `details` (the English of a `Why`) is kept only
for the REST API's clients and for readers of an older version. Nothing decides by parsing it:
`Why.from_details` exists only to read what an earlier version wrote as text.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class JobState(StrEnum):
    """The read model's state machine: submitted -> running -> available -> completing -> finished."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    AVAILABLE = "available"  # every forwarded port answers
    COMPLETING = "completing"
    FINISHED = "finished"  # terminal


class FailureKind(StrEnum):
    """Why sbatch did not take a job, as far as the API's client can act on it (its HTTP status)."""

    NONE = ""  # the job was not refused (the read model's value before any JobSubmitFailed)
    REJECTED = "rejected"  # the job itself is wrong: template, sbatch's refusal, cancelled first
    UNKNOWN_USER = "unknown-user"
    UNAVAILABLE = "unavailable"  # the cluster could not be reached: try again later


class WhyKind(StrEnum):
    """What the last word on a job is about; `Why.text` holds the particulars."""

    NONE = ""  # nothing said yet
    QUEUED = "queued"  # text: the Slurm job id
    ADOPTED = "adopted"  # text: the Slurm job id
    SUBMIT_FAILED = "submit-failed"  # text: the full reason (hosts and sbatch's words included)
    QUEUED_WAITING = "queued-waiting"  # text: Slurm's pending reason (squeue %r), "" for none
    SCHEDULER_UNREACHABLE = "scheduler-unreachable"  # text: why squeue failed
    RUNNING = "running"
    SUSPENDED = "suspended"
    SLURM_STATE_UNKNOWN = "slurm-state-unknown"  # text: the state squeue printed
    CANCEL_REQUESTED = "cancel-requested"
    CANCEL_FAILED = "cancel-failed"  # text: scancel's complaint
    COMPLETING = "completing"
    ENDED = "ended"  # text: Slurm's final state (the exit code is the view's)
    PORTS_REQUESTED = "ports-requested"
    PORTS_REFUSED = "ports-refused"  # text: keyhole-api's reason
    APP_STARTING = "app-starting"  # ports forwarded, the application does not answer (yet)
    APP_LISTENING = "app-listening"


class Why(msgspec.Struct, frozen=True):
    """Why a job is where it is: a kind to decide on, and text to show (or to log)."""

    kind: WhyKind = WhyKind.NONE
    text: str = ""

    @classmethod
    def from_details(cls, details: str) -> Why:
        """The Why behind `details` as an earlier version worded it (events and snapshots without `why`)."""
        for kind, words in _WORDS.items():
            head, _, tail = words.partition("{}")
            if "{}" in words and details.startswith(head) and details.endswith(tail):
                text = details[len(head):len(details) - len(tail)]
                if kind is WhyKind.ENDED:
                    text = text.split(", exit code ", 1)[0]
                return cls(kind, text)
            if details == words:
                return cls(kind)
            if kind is WhyKind.CANCEL_REQUESTED and details.startswith(words + ": "):
                return cls(kind, details[len(words) + 2:])
        if details == "waiting":
            return cls(WhyKind.QUEUED_WAITING)
        # An unknown word from an older version: shown as it is, decided on by nobody.
        return cls(WhyKind.NONE, details)


# How each kind reads; "{}" is the text. Kept word for word: clients of the REST API read them.
_WORDS = {
    WhyKind.QUEUED: "queued as Slurm job {}",
    WhyKind.ADOPTED: "adopted Slurm job {}",
    WhyKind.SUBMIT_FAILED: "submission failed: {}",
    WhyKind.QUEUED_WAITING: "waiting: {}",
    WhyKind.SCHEDULER_UNREACHABLE: "Slurm cannot be asked right now: {}",
    WhyKind.RUNNING: "running",
    WhyKind.SUSPENDED: "suspended",
    WhyKind.SLURM_STATE_UNKNOWN: "Slurm reports an unknown state: {}",
    WhyKind.CANCEL_REQUESTED: "cancel requested",
    WhyKind.CANCEL_FAILED: "cancel failed: {}",
    WhyKind.COMPLETING: "completing",
    WhyKind.ENDED: "ended: {}",
    WhyKind.PORTS_REQUESTED: "ports requested",
    WhyKind.PORTS_REFUSED: "port request refused: {}",
    WhyKind.APP_STARTING: "waiting for the application",
    WhyKind.APP_LISTENING: "application is listening",
}


def waiting(pending_reason: str) -> Why:
    """A queued job's Why from squeue's pending reason ("None" is Slurm's word for none)."""
    return Why(WhyKind.QUEUED_WAITING, "" if pending_reason == "None" else pending_reason)


def render(why: Why, exit_code: int | None = None) -> str:
    """`why` in English: a job's `details` as the REST API has always worded them."""
    if why.kind is WhyKind.NONE:
        return why.text
    if why.kind is WhyKind.QUEUED_WAITING and not why.text:
        return "waiting"
    text = why.text
    if why.kind is WhyKind.CANCEL_REQUESTED and text:
        return f"{_WORDS[why.kind]}: {text}"  # a reason other than the owner's ("idle")
    if why.kind is WhyKind.ENDED and exit_code is not None:
        text = f"{text}, exit code {exit_code}"
    return _WORDS[why.kind].replace("{}", text)
