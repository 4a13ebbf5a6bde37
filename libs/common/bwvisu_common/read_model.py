"""The job read model, folded from events by one pure function.

State machine (`JobState`): submitted -> running -> available -> completing -> finished.
`finished` is terminal: no later event (a late PortOpen, a duplicate JobStarted) moves a job
out of it. Each event that has something to say sets the job's `why` and, with it, `details`.

Retention: a job finished longer ago than the configured time is forgotten (`due_for_forgetting`),
and only a job's first event opens a view (`opens_job`), so a forgotten job's late event never
brings it back as a new, empty job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import msgspec

from bwvisu_common import events as ev
from bwvisu_common.job_facts import FailureKind, JobState, Why, WhyKind, render


class Service(msgspec.Struct, frozen=True, kw_only=True):
    """One forwarded port as runner-api shows it."""

    internal_port: int
    external_port: int
    gateway: str
    open: bool = False


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """What the APIs answer about a job; `seq` is the stream sequence of its last event."""

    job_id: str
    uid: str = ""
    template_name: str = ""
    variables: dict[str, str] = {}
    state: JobState = JobState.SUBMITTED
    why: Why = Why()
    details: str = ""  # `why` in English, as the REST API has always said it
    slurm_id: str = ""
    command_node: str = ""
    nodes: list[str] = []
    gateway: str = ""
    services: list[Service] = []
    ports_granted: bool = False
    cancel_requested: bool = False
    exit_code: int | None = None
    client_addresses: list[str] = []  # where the owner connected from (ClientAddressAllowed)
    failure: FailureKind = FailureKind.NONE  # JobSubmitFailed's kind
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    available_at: datetime | None = None  # the first time every forwarded port answered
    # Run time added on the owner's word (JobExtended), and Slurm's time limit since (0: as submitted).
    extended_minutes: int = 0
    time_limit: int = 0  # minutes
    extension_pending: str = ""  # the id of a JobExtensionRequested not answered yet
    extension_answered: str = ""  # the id of the last one answered
    extension_refusal: str = ""  # why that one was refused ("" if granted)
    updated_at: datetime | None = None
    seq: int = 0
    # When the job's forwards last carried traffic (SessionActivity of any gateway), at a coarse
    # grain; None before any.
    last_activity: datetime | None = None
    cancel_reason: str = ""  # JobCancelRequested's reason ("idle"); "" for the owner's cancel

    def __post_init__(self) -> None:
        if self.details and self.why.kind is WhyKind.NONE and not self.why.text:
            # A snapshot from before `why` existed: its details are all it says.
            msgspec.structs.force_setattr(self, "why", Why.from_details(self.details))


def evolve(job: JobView | None, event: ev.Event, seq: int = 0) -> JobView:
    """Apply one event to a job (None before its first event). Pure; never raises."""
    if job is None:
        job = JobView(job_id=event.job_id, submitted_at=event.time)
    changes = _changes(job, event)
    if job.state == JobState.FINISHED:
        # Terminal: only Slurm's final word (a JobEnded after a failed submit or a cancel)
        # still adds facts; nothing moves a job out of `finished`.
        keep: tuple[str, ...] = ("why", "details", "exit_code") if isinstance(event, ev.JobEnded) else ()
        if isinstance(event, ev.JobExtended | ev.JobExtensionRefused):
            keep = ("extension_pending", "extension_answered", "extension_refusal")
        changes = {k: v for k, v in changes.items() if k in keep}
    return msgspec.structs.replace(job, **changes, updated_at=event.time, seq=max(seq, job.seq))


def opens_job(event: ev.Event) -> bool:
    """Whether `event` may start a view of a job nobody knows (yet, or any more)."""
    return isinstance(event, ev.JobSubmitted | ev.JobAdopted)


def due_for_forgetting(jobs: Iterable[JobView], now: datetime, kept_for: timedelta) -> list[str]:
    """The jobs finished (by their last event) longer than `kept_for` before `now`. Pure."""
    horizon = now - kept_for
    return [j.job_id for j in jobs
            if j.state == JobState.FINISHED and (j.updated_at is None or j.updated_at <= horizon)]


def fold(events: Sequence[tuple[int, ev.Event]], job: JobView | None = None) -> JobView | None:
    for seq, event in events:
        job = evolve(job, event, seq)
    return job


def _changes(job: JobView, event: ev.Event) -> dict[str, object]:
    match event:
        case ev.JobSubmitted(uid=uid, template_name=name, variables=variables):
            return {"uid": uid, "template_name": name, "variables": dict(variables),
                    "submitted_at": event.time}
        case ev.JobQueued(slurm_id=slurm_id, command_node=node):
            return {"slurm_id": slurm_id, "command_node": node, **_say(WhyKind.QUEUED, slurm_id)}
        case ev.JobAdopted(slurm_id=slurm_id, uid=uid):
            return {"slurm_id": slurm_id, "uid": job.uid or uid, **_say(WhyKind.ADOPTED, slurm_id)}
        case ev.JobSubmitFailed(reason=reason, kind=kind):
            return {"state": JobState.FINISHED, "failure": kind, **_say(WhyKind.SUBMIT_FAILED, reason)}
        case ev.JobStarted(nodes=nodes):
            state = JobState.RUNNING if job.state == JobState.SUBMITTED else job.state
            return {"state": state, "nodes": list(nodes), **_say(WhyKind.RUNNING),
                    "started_at": job.started_at or event.time}
        case ev.JobDetailsChanged(details=details, why=why):
            if why is None:  # an earlier version wrote only the text
                return {"why": Why.from_details(details), "details": details}
            return {"why": why, "details": render(why)}
        case ev.JobCompleting():
            return {"state": JobState.COMPLETING, **_say(WhyKind.COMPLETING)}
        case ev.JobEnded(slurm_state=slurm_state, exit_code=code):
            # A cancel's reason stays in the details once the job ended ("ended: CANCELLED (idle)").
            ended = f"{slurm_state} ({job.cancel_reason})" if job.cancel_reason else slurm_state
            return {"state": JobState.FINISHED, "exit_code": code, "services": [], "client_addresses": [],
                    **_say(WhyKind.ENDED, ended, code)}
        case ev.JobCancelRequested(reason=reason):
            # The first request's reason stands.
            reason = job.cancel_reason if job.cancel_requested else reason
            return {"cancel_requested": True, "cancel_reason": reason,
                    **_say(WhyKind.CANCEL_REQUESTED, reason)}
        case ev.PortsRequested():
            return _say(WhyKind.PORTS_REQUESTED)
        case ev.PortsRefused(reason=reason):
            return _say(WhyKind.PORTS_REFUSED, reason)
        case ev.PortsAssigned(gateway=gateway):
            return {"gateway": gateway, "ports_granted": True}
        case ev.PortsUnavailable(gateway=gateway):
            if _not_current(job, gateway):
                return {}  # a late answer to an assignment the job moved away from
            return {"gateway": "", "ports_granted": False}
        case ev.PortsForwarded(gateway=gateway, forwards=forwards):
            if _not_current(job, gateway):
                return {}
            services = [Service(internal_port=f.internal_port, external_port=f.external_port,
                                gateway=gateway) for f in forwards]
            # Forwards on a new gateway (a failover) are not known to answer until probed there.
            probed = JobState.RUNNING if job.state == JobState.AVAILABLE else job.state
            return {"gateway": gateway, "services": services, "state": probed, **_say(WhyKind.APP_STARTING)}
        case ev.PortOpen(external_port=port, gateway=gateway) | ev.PortClosed(
                external_port=port, gateway=gateway):
            if gateway and gateway != job.gateway:
                return {}  # another gateway's word on a port that is not its to probe
            return _port_state(job, port, isinstance(event, ev.PortOpen), event.time)
        case ev.ForwardsRemoved(gateway=gateway):
            if _not_current(job, gateway):
                return {}  # a gateway the job left took out its stale rules: not the job's forwards
            return {"services": []}
        case ev.SessionActivity(gateway=gateway, last_activity=at):
            # Any gateway's word counts: connections made through the gateway a job moved away from
            # live on there. A gateway can only make a session younger, never older.
            if job.last_activity is not None and at <= job.last_activity:
                return {}
            return {"last_activity": at}
        case ev.ClientAddressAllowed(address=address):
            if not address or address in job.client_addresses:
                return {}
            return {"client_addresses": [*job.client_addresses, address]}
        case ev.JobExtensionRequested():
            return {"extension_pending": event.event_id}
        case ev.JobExtended() | ev.JobExtensionRefused():
            return _extension_answer(job, event)
        case ev.JobTimeLimitRead(time_limit=limit):
            return {} if job.time_limit else {"time_limit": limit}
    return {}


def _extension_answer(job: JobView, event: ev.JobExtended | ev.JobExtensionRefused) -> dict[str, object]:
    if event.request_id == job.extension_answered:
        return {}  # the same answer again (a redelivered request answered twice)
    changes: dict[str, object] = {"extension_answered": event.request_id}
    if event.request_id == job.extension_pending:
        changes["extension_pending"] = ""
    if isinstance(event, ev.JobExtensionRefused):
        return {**changes, "extension_refusal": event.reason}
    return {**changes, "extension_refusal": "", "time_limit": event.time_limit,
            "extended_minutes": job.extended_minutes + event.minutes}


def _not_current(job: JobView, gateway: str) -> bool:
    """An event from a gateway that is not the job's: it never changes the job's forwards."""
    return bool(gateway) and bool(job.gateway) and gateway != job.gateway


def _say(kind: WhyKind, text: str = "", exit_code: int | None = None) -> dict[str, object]:
    why = Why(kind, text)
    return {"why": why, "details": render(why, exit_code)}


def _port_state(job: JobView, port: int, is_open: bool, at: datetime) -> dict[str, object]:
    services = [msgspec.structs.replace(s, open=is_open) if s.external_port == port else s
                for s in job.services]
    changes: dict[str, object] = {"services": services}
    if job.state in (JobState.RUNNING, JobState.AVAILABLE):
        # Available once every forwarded port answers; back to running if one stops.
        all_open = bool(services) and all(s.open for s in services)
        changes["state"] = JobState.AVAILABLE if all_open else JobState.RUNNING
        changes.update(_say(WhyKind.APP_LISTENING if all_open else WhyKind.APP_STARTING))
        if all_open and job.available_at is None:
            changes["available_at"] = at
    return changes
