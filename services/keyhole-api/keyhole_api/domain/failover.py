"""Which jobs' forwards must move off a dead gateway, and where to. Pure.

A job's forwards live on one gateway. When that gateway's agent falls silent (its host is gone),
the job's application still listens on the same internal ports: its forwards move to a live
gateway with new external ports there, and nothing about the job itself changes.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bwvisu_common import events as ev
from bwvisu_common.assignments import is_current
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView
from bwvisu_common.state_keys import gateway_ports, port_key, port_of
from keyhole_api.domain.allocate import Reservation
from keyhole_api.domain.grant import Outcome, forwarded_on

_OVER = (ev.JobEnded, ev.JobCancelRequested, ev.JobSubmitFailed, ev.JobCompleting)


@dataclass(frozen=True)
class Move:
    """Move the job's forwards off `from_gateway`, appending only if the job's last event is still
    at `expected_seq` (so that of several keyhole-api replicas exactly one moves it)."""

    job_id: str
    from_gateway: str
    nodes: list[str]
    internal_ports: list[int]
    expected_seq: int


def current_gateway(view: JobView) -> str:
    """The gateway the job's forwards are on (or are being moved to)."""
    return view.gateway or (view.services[0].gateway if view.services else "")


def still_dead(known: Iterable[str], alive: Collection[str], dead_since: Mapping[str, float], now: float,
               confirm: float) -> tuple[dict[str, float], set[str]]:
    """Since when each known gateway has not been alive, and those dead for `confirm` seconds.

    A gateway that failed to answer one assignment counts as dead only until its next heartbeat:
    that alone must not move its jobs.
    """
    if not alive:
        # Nobody beats: more likely our own NATS connection is gone than every gateway. Start
        # counting afresh once heartbeats come again, so a reconnect moves nobody at once.
        return {}, set()
    since = {g: dead_since.get(g, now) for g in known if g not in alive}
    return since, {g for g, t in since.items() if now - t >= confirm}


def stranded(views: Iterable[JobView], alive: Collection[str], dead: Collection[str]) -> list[str]:
    """Running or available jobs with forwards on a dead gateway: worth a closer look."""
    if not alive:
        return []  # nowhere to move them to
    return sorted(v.job_id for v in views
                  if v.state in (JobState.RUNNING, JobState.AVAILABLE) and v.services
                  and not v.cancel_requested and current_gateway(v) in dead)


def unanswered_moves(views: Iterable[JobView], now: datetime, patience: float) -> list[str]:
    """Running or available jobs whose forwards were moved to a gateway that has not answered for
    `patience` seconds, while nothing else happened to them.

    The move waits for that answer and gives up on it; this finds the moves whose wait was cut short
    (the move's stored append lost its answer, or giving up found the stream unavailable).
    """
    return sorted(v.job_id for v in views
                  if v.state in (JobState.RUNNING, JobState.AVAILABLE) and not v.cancel_requested
                  and v.services and v.gateway and forwarded_on(v) != v.gateway
                  and v.updated_at is not None and (now - v.updated_at).total_seconds() >= patience)


def last_move(history: Sequence[ev.Event]) -> ev.PortsAssigned | None:
    """The job's newest assignment if it moved forwards and still awaits its gateway's answer."""
    assigned = [e for e in history if isinstance(e, ev.PortsAssigned)]
    if not assigned or not assigned[-1].moved_from or not is_current(history, assigned[-1].event_id):
        return None
    return assigned[-1]


def decide_move(history: Sequence[tuple[int, ev.Event]], alive: Collection[str]) -> Move | None:
    """Whether the job's history calls for moving its forwards; None: they are fine, or gone.

    The forwards the job holds are those of the last assignment its own gateway confirmed; an
    answer from any other gateway (a late one, from a gateway the job left) changes nothing.
    """
    if not history:
        return None
    forwarded: ev.PortsAssigned | None = None
    pending: ev.PortsAssigned | None = None
    for _, event in history:
        if isinstance(event, _OVER):
            return None
        if isinstance(event, ev.PortsAssigned):
            pending = event
            continue
        from_pending = pending is not None and getattr(event, "gateway", None) == pending.gateway
        if isinstance(event, ev.PortsForwarded) and from_pending:
            forwarded, pending = pending, None
        elif isinstance(event, ev.PortsUnavailable) and from_pending:
            pending = None
        elif isinstance(event, ev.PortsUnavailable) and forwarded is not None \
                and event.gateway == forwarded.gateway:
            forwarded = None  # given up on after all
        elif isinstance(event, ev.ForwardsRemoved) and forwarded is not None \
                and event.gateway == forwarded.gateway:
            forwarded = None
    if forwarded is None or forwarded.gateway in alive:
        return None
    if pending is not None and pending.gateway in alive:
        return None  # an assignment to a live gateway is under way
    return Move(job_id=history[-1][1].job_id, from_gateway=forwarded.gateway, nodes=list(forwarded.nodes),
                internal_ports=[f.internal_port for f in forwarded.forwards], expected_seq=history[-1][0])


def pick_moved(gateway: str, internal_ports: Sequence[int], *, held: Mapping[str, str],
               port_range: tuple[int, int], static: bool,
               rng: random.Random | None = None) -> Reservation | None:
    """Free external ports on `gateway` for the job's internal ports (which stay as they are: the
    application listens on them, and the job holds them on its nodes); None if they do not fit."""
    rng = rng or random.SystemRandom()
    taken = {port_of(k) for k in held if k.startswith(gateway_ports(gateway))}
    if static:  # external = internal, as when the job was first forwarded
        if any(p in taken for p in internal_ports):
            return None
        externals = list(internal_ports)
    else:
        free = [p for p in range(port_range[0], port_range[1] + 1) if p not in taken]
        if len(free) < len(internal_ports):
            return None
        externals = rng.sample(free, len(internal_ports))
    forwards = [ev.Forward(internal_port=i, external_port=e)
                for i, e in zip(internal_ports, externals, strict=True)]
    return Reservation(gateway, forwards, [port_key(gateway, e) for e in externals])


def moved(move: Move, reservation: Reservation) -> ev.PortsAssigned:
    return ev.PortsAssigned(job_id=move.job_id, gateway=reservation.gateway, nodes=move.nodes,
                            forwards=reservation.forwards, moved_from=move.from_gateway)


def move_answered(view: JobView, seq: int, gateway: str) -> bool:
    """The gateway the forwards moved to (by the assignment at `seq`) answered it, or it no longer
    matters: the job ended, or its forwards were assigned elsewhere since."""
    return view.seq >= seq and (view.gateway != gateway or forwarded_on(view) == gateway
                                or view.state == JobState.FINISHED)


def move_outcome(view: JobView | None, gateway: str) -> Outcome:
    """What became of a move to `gateway`, from the job's view once answered (None: not in time)."""
    if view is None:
        return Outcome.NO_ANSWER
    if view.services and forwarded_on(view) == gateway:
        return Outcome.FORWARDED
    return Outcome.JOB_ENDED if view.state == JobState.FINISHED else Outcome.PORTS_BUSY
