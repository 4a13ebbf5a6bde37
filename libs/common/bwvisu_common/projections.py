"""The job read model, folded from events by one pure function.

State machine: submitted -> running -> available -> completing -> finished. `finished` is
terminal: no later event (a late PortOpen, a duplicate JobStarted) moves a job out of it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from bwvisu_common import events as ev

SUBMITTED = "submitted"
RUNNING = "running"
AVAILABLE = "available"
COMPLETING = "completing"
FINISHED = "finished"
STATES = (SUBMITTED, RUNNING, AVAILABLE, COMPLETING, FINISHED)


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
    state: str = SUBMITTED
    details: str = ""
    slurm_id: str = ""
    command_node: str = ""
    nodes: list[str] = []
    gateway: str = ""
    services: list[Service] = []
    ports_granted: bool = False
    cancel_requested: bool = False
    exit_code: int | None = None
    client_addresses: list[str] = []  # where the owner connected from (ClientAddressAllowed)
    failure: str = ""  # JobSubmitFailed's kind: rejected | unknown-user | unavailable
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    seq: int = 0


def evolve(job: JobView | None, event: ev.Event, seq: int = 0) -> JobView:
    """Apply one event to a job (None before its first event). Pure; never raises."""
    if job is None:
        job = JobView(job_id=event.job_id, submitted_at=event.time)
    changes = _changes(job, event)
    if job.state == FINISHED:
        # Terminal: only Slurm's final word (a JobEnded after a failed submit or a cancel)
        # still adds facts; nothing moves a job out of `finished`.
        keep = ("details", "exit_code") if isinstance(event, ev.JobEnded) else ()
        changes = {k: v for k, v in changes.items() if k in keep}
    return msgspec.structs.replace(job, **changes, updated_at=event.time, seq=max(seq, job.seq))


def fold(events: list[tuple[int, ev.Event]], job: JobView | None = None) -> JobView | None:
    for seq, event in events:
        job = evolve(job, event, seq)
    return job


def _changes(job: JobView, event: ev.Event) -> dict[str, object]:
    match event:
        case ev.JobSubmitted(uid=uid, template_name=name, variables=variables):
            return {"uid": uid, "template_name": name, "variables": dict(variables),
                    "submitted_at": event.time}
        case ev.JobQueued(slurm_id=slurm_id, command_node=node):
            return {"slurm_id": slurm_id, "command_node": node,
                    "details": f"queued as Slurm job {slurm_id}"}
        case ev.JobAdopted(slurm_id=slurm_id, uid=uid):
            return {"slurm_id": slurm_id, "uid": job.uid or uid,
                    "details": f"adopted Slurm job {slurm_id}"}
        case ev.JobSubmitFailed(reason=reason, kind=kind):
            return {"state": FINISHED, "failure": kind, "details": f"submission failed: {reason}"}
        case ev.JobStarted(nodes=nodes):
            state = RUNNING if job.state == SUBMITTED else job.state
            return {"state": state, "nodes": list(nodes), "details": "running",
                    "started_at": job.started_at or event.time}
        case ev.JobDetailsChanged(details=details):
            return {"details": details}
        case ev.JobCompleting():
            return {"state": COMPLETING, "details": "completing"}
        case ev.JobEnded(slurm_state=slurm_state, exit_code=code):
            return {"state": FINISHED, "exit_code": code, "services": [], "client_addresses": [],
                    "details": f"ended: {slurm_state}" + ("" if code is None else f", exit code {code}")}
        case ev.JobCancelRequested():
            return {"cancel_requested": True, "details": "cancel requested"}
        case ev.PortsRequested():
            return {"details": "ports requested"}
        case ev.PortsRefused(reason=reason):
            return {"details": f"port request refused: {reason}"}
        case ev.PortsAssigned(gateway=gateway):
            return {"gateway": gateway, "ports_granted": True}
        case ev.PortsUnavailable():
            return {"gateway": "", "ports_granted": False}
        case ev.PortsForwarded(gateway=gateway, forwards=forwards):
            services = [Service(internal_port=f.internal_port, external_port=f.external_port,
                                gateway=gateway) for f in forwards]
            return {"gateway": gateway, "services": services, "details": "waiting for the application"}
        case ev.PortOpen(external_port=port, gateway=gateway) | ev.PortClosed(
                external_port=port, gateway=gateway):
            if gateway and gateway != job.gateway:
                return {}  # another gateway's word on a port that is not its to probe
            return _port_state(job, port, isinstance(event, ev.PortOpen))
        case ev.ForwardsRemoved():
            return {"services": []}
        case ev.ClientAddressAllowed(address=address):
            if not address or address in job.client_addresses:
                return {}
            return {"client_addresses": [*job.client_addresses, address]}
    return {}


def _port_state(job: JobView, port: int, is_open: bool) -> dict[str, object]:
    services = [msgspec.structs.replace(s, open=is_open) if s.external_port == port else s
                for s in job.services]
    changes: dict[str, object] = {"services": services}
    if job.state in (RUNNING, AVAILABLE):
        # Available once every forwarded port answers; back to running if one stops.
        all_open = bool(services) and all(s.open for s in services)
        changes["state"] = AVAILABLE if all_open else RUNNING
        changes["details"] = "application is listening" if all_open else "waiting for the application"
    return changes
