"""What a job's event history says the gateway should do. Pure functions over its events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bwvisu_common import events as ev
from bwvisu_common.assignments import ANSWERS, TERMINAL


@dataclass(frozen=True)
class Wanted:
    """Forwards that should be installed on this gateway, to the first of `nodes`."""

    nodes: list[str]
    forwards: list[ev.Forward]


def wanted(history: Sequence[ev.Event], gateway: str) -> Wanted | None:
    """The forwards this gateway confirmed for the job and should still hold, if any.

    The job holds the forwards of the last assignment its gateway confirmed, until that gateway
    removes them or another confirms a newer one (a move): a refused move leaves them where they
    were, and no gateway's word counts for another's forwards.
    """
    forwarded: tuple[ev.PortsAssigned, list[ev.Forward]] | None = None
    pending: ev.PortsAssigned | None = None
    for event in history:
        if isinstance(event, TERMINAL):
            return None
        if isinstance(event, ev.PortsAssigned):
            pending = event
            continue
        if not isinstance(event, ANSWERS):
            continue
        if isinstance(event, ev.ForwardsRemoved):
            if forwarded is not None and event.gateway == forwarded[0].gateway:
                forwarded = None
        elif pending is not None and event.gateway == pending.gateway:
            if isinstance(event, ev.PortsForwarded):
                forwarded = (pending, list(event.forwards))
            pending = None
        elif isinstance(event, ev.PortsUnavailable) and forwarded is not None \
                and event.gateway == forwarded[0].gateway:
            forwarded = None  # given up on after all (keyhole-api released its ports)
    if forwarded is None or forwarded[0].gateway != gateway:
        return None
    return Wanted(nodes=list(forwarded[0].nodes), forwards=forwarded[1])


def forwarded_before(history: Sequence[ev.Event], move: ev.PortsAssigned) -> bool:
    """True if the gateway the move comes from forwarded the same internal ports on the same nodes
    for the job: they were checked free then, and are the job's application's since. A move that
    does not match is not trusted to skip that check."""
    internal = sorted(f.internal_port for f in move.forwards)
    assigned: ev.PortsAssigned | None = None
    for event in history:
        if event.event_id == move.event_id:
            return False
        if isinstance(event, ev.PortsAssigned) and event.gateway == move.moved_from:
            assigned = event
        elif (isinstance(event, ev.PortsForwarded) and assigned is not None
              and event.gateway == move.moved_from and list(assigned.nodes) == list(move.nodes)
              and sorted(f.internal_port for f in event.forwards) == internal):
            return True
    return False


def allowed_addresses(history: Sequence[ev.Event]) -> list[str]:
    """Client addresses the owner connected from, in order, each once, until the job's end."""
    found: list[str] = []
    for event in history:
        if isinstance(event, (ev.JobEnded, ev.JobSubmitFailed)):
            return []
        if isinstance(event, ev.ClientAddressAllowed) and event.address not in found:
            found.append(event.address)
    return found
