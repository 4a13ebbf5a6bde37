"""What a verified port request gets: the job's standing grant, a new one, or a refusal. Pure."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from bwvisu_common.events import Forward
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView
from keyhole_api.domain.verify import PortRequest
from keyhole_api.errors import Refusal, Refused

ENDED = "job ended while its ports were being forwarded"


@dataclass(frozen=True)
class Grant:
    """Forwarded ports of a job on one gateway: what the client is answered with."""

    gateway: str
    forwards: list[Forward]


class Outcome(Enum):
    """What became of one assignment of ports to a gateway."""

    FORWARDED = "forwarded"
    NO_ANSWER = "no-answer"  # the agent did not answer in time: count the gateway as dead
    PORTS_BUSY = "ports-busy"  # the agent found a port in use: pick others
    JOB_ENDED = "job-ended"  # nothing is left to forward to: refuse


def forwarded_on(view: JobView | None) -> str:
    """The gateway that forwards all of the job's services ("" if none, or not one gateway)."""
    gateways = {s.gateway for s in view.services} if view is not None else set()
    return gateways.pop() if len(gateways) == 1 else ""


def standing_grant(view: JobView | None, req: PortRequest, gateways: Collection[str]) -> Grant | None:
    """The grant the job holds, to answer a retry with; None while it holds none.

    Refused if the job holds a grant of another size (a job gets one) or has ended.
    """
    # The services' own gateway, not `view.gateway`: while forwards move, that names the gateway
    # they move to, which does not forward them yet (its external ports are other ones).
    held = forwarded_on(view)
    if view is not None and held and held in gateways:
        if len(view.services) != req.count:
            raise Refused(Refusal.ALREADY_GRANTED, f"{len(view.services)} port(s) were already granted "
                                                   f"to this job; a job gets one grant")
        return Grant(held, [Forward(internal_port=s.internal_port, external_port=s.external_port)
                                    for s in view.services])
    if view is not None and view.state == JobState.FINISHED:
        raise Refused(Refusal.NOT_RUNNING, ENDED)
    return None


def settled(job: JobView, assigned_seq: int) -> bool:
    """The agent answered the assignment at `assigned_seq` (forwarded or not), or the job ended."""
    return job.seq >= assigned_seq and (bool(job.services) or not job.ports_granted
                                        or job.state == JobState.FINISHED)


def outcome(view: JobView | None, gateway: str) -> Outcome:
    """What became of an assignment to `gateway`, from the job's view once settled (None: not in time)."""
    if view is not None and view.services and forwarded_on(view) == gateway:
        return Outcome.FORWARDED
    if view is None:
        return Outcome.NO_ANSWER
    return Outcome.JOB_ENDED if view.state == JobState.FINISHED else Outcome.PORTS_BUSY


def stuck(updated_at: float | None, now: float, stale_after: float) -> bool:
    """A grant whose job shows no progress for `stale_after` s was left by a request that died."""
    return updated_at is not None and now - updated_at >= stale_after


def answer(job_id: str, grant: Grant, external_ip: str) -> dict[str, object]:
    """The body the job's client reads its ports from."""
    return {"job-id": job_id, "gateway": grant.gateway, "forwards": [
        {"internal-port": f.internal_port, "external-port": f.external_port, "external-ip": external_ip,
         "gateway": grant.gateway} for f in grant.forwards]}
