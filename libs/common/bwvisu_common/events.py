"""Every event of a bwvisu job (DESIGN.md section 2), and the one codec for them.

Events are frozen, tagged msgspec structs. Only add fields, with defaults; a breaking
change is a new struct name, so that every event ever stored stays decodable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from bwvisu_common.errors import BwvisuError
from bwvisu_common.job_facts import FailureKind, Why, render


def new_event_id() -> str:
    """A random UUID (version 4) in hex, as uuid.uuid4().hex, in a fraction of its time: a squeue
    poll of many changed jobs makes thousands at once."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


def new_job_id() -> str:
    # Our own ids, not Slurm's: a cluster runs other jobs too (DESIGN.md section 3).
    return uuid.uuid4().hex[:16]


def job_of(events: Sequence[Event]) -> str:
    """The one job a batch of events is about; an empty or mixed batch is a programming error."""
    if not events:
        raise BwvisuError("append needs at least one event")
    job_id = events[0].job_id
    if any(e.job_id != job_id for e in events):
        raise BwvisuError("append takes the events of one job at a time")
    return job_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Fields every event carries: its own id (the Nats-Msg-Id), the job and the time."""

    job_id: str
    event_id: str = msgspec.field(default_factory=new_event_id)
    time: datetime = msgspec.field(default_factory=utcnow)


class Forward(msgspec.Struct, frozen=True, kw_only=True):
    """One forwarded port: gateway port `external_port` to `internal_port` on the job's nodes."""

    internal_port: int
    external_port: int


# --- lifecycle (runner-api, scheduler-adapter) -------------------------------------------


class JobSubmitted(Event, frozen=True, kw_only=True):
    uid: str
    template_name: str
    variables: dict[str, str] = {}


class JobQueued(Event, frozen=True, kw_only=True):
    slurm_id: str
    command_node: str = ""


class JobSubmitFailed(Event, frozen=True, kw_only=True):
    """sbatch did not take the job. `kind` lets the API pick its status code."""

    reason: str
    kind: FailureKind = FailureKind.REJECTED


class JobAdopted(Event, frozen=True, kw_only=True):
    """A job tagged as ours that the log never saw queued (a crash between sbatch and JobQueued)."""

    slurm_id: str
    uid: str = ""


class JobStarted(Event, frozen=True, kw_only=True):
    nodes: list[str]


class JobDetailsChanged(Event, frozen=True, kw_only=True):
    """Slurm's word on a job that did not change state (why it waits, a polling error).

    `why` is the fact; `details` its English, still written for readers of an earlier version
    (whose events have no `why`: the read model takes their `details` at its word)."""

    details: str
    why: Why | None = None

    @classmethod
    def saying(cls, job_id: str, why: Why) -> JobDetailsChanged:
        """The note that a job's Why is now `why` (with its words, for earlier readers)."""
        return cls(job_id=job_id, details=render(why), why=why)


class JobCompleting(Event, frozen=True, kw_only=True):
    pass


class JobEnded(Event, frozen=True, kw_only=True):
    slurm_state: str
    exit_code: int | None = None


class JobCancelRequested(Event, frozen=True, kw_only=True):
    # Why, when not the owner's (or an admin's) request: "idle" (the site's idle-timeout).
    reason: str = ""


# --- forwarding (keyhole-api, gateway-agent) ---------------------------------------------


class PortsRequested(Event, frozen=True, kw_only=True):
    count: int
    nodes: list[str]


class PortsRefused(Event, frozen=True, kw_only=True):
    reason: str


class PortsAssigned(Event, frozen=True, kw_only=True):
    gateway: str
    nodes: list[str]
    forwards: list[Forward]
    # A failover: the job's forwards move here from that (dead) gateway. Its application already
    # listens on the internal ports, so the agent does not ask them to be free.
    moved_from: str = ""


class PortsForwarded(Event, frozen=True, kw_only=True):
    gateway: str
    forwards: list[Forward]


class PortsUnavailable(Event, frozen=True, kw_only=True):
    gateway: str
    forwards: list[Forward]
    reason: str = ""


class PortOpen(Event, frozen=True, kw_only=True):
    external_port: int
    gateway: str = ""  # the gateway that probed it: only the job's own gateway is believed


class PortClosed(Event, frozen=True, kw_only=True):
    external_port: int
    gateway: str = ""


class ForwardsRemoved(Event, frozen=True, kw_only=True):
    gateway: str


# --- access (runner-api on the portal's word, gateway-agent) -----------------------------


class ClientAddressAllowed(Event, frozen=True, kw_only=True):
    """The owner pressed Connect from `address` (IPv4): with `restrict-forwards-to-clients`,
    the job's forwards accept connections from it (and from the earlier ones)."""

    address: str = ""


# --- run time (runner-api on the owner's word, scheduler-adapter) ----------------------------


class JobExtensionRequested(Event, frozen=True, kw_only=True):
    """The owner asks for `minutes` more run time; scheduler-adapter answers with JobExtended or
    JobExtensionRefused carrying this event's id as `request_id`."""

    minutes: int


class JobExtended(Event, frozen=True, kw_only=True):
    """Slurm's time limit of the job is now `time_limit` minutes, `minutes` more than before."""

    request_id: str
    minutes: int
    time_limit: int


class JobExtensionRefused(Event, frozen=True, kw_only=True):
    request_id: str
    reason: str


class JobTimeLimitRead(Event, frozen=True, kw_only=True):
    """Slurm's time limit of the job (minutes), read before its first extension: the base that a
    request coming again builds on, so that it never adds its minutes twice."""

    time_limit: int


# --- activity (gateway-agent) --------------------------------------------------------------


class SessionActivity(Event, frozen=True, kw_only=True):
    """The job's forwards on `gateway` carried traffic; `last_activity` is when, at a coarse grain
    (the agent's activity-interval, a minute by default). Appended only when it changed."""

    gateway: str
    last_activity: datetime


AnyEvent = (
    JobSubmitted
    | JobQueued
    | JobSubmitFailed
    | JobAdopted
    | JobStarted
    | JobDetailsChanged
    | JobCompleting
    | JobEnded
    | JobCancelRequested
    | PortsRequested
    | PortsRefused
    | PortsAssigned
    | PortsForwarded
    | PortsUnavailable
    | PortOpen
    | PortClosed
    | ForwardsRemoved
    | ClientAddressAllowed
    | JobExtensionRequested
    | JobExtended
    | JobExtensionRefused
    | JobTimeLimitRead
    | SessionActivity
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes) -> AnyEvent:
    return _decoder.decode(data)
