"""Whether an assignment of ports to a gateway still awaits that gateway's answer. Pure.

The gateway agent installs an assignment only while it awaits its answer, and keyhole-api gives
up on one (PortsUnavailable) only while it awaits it; both append on the history they read, so
an answer and a giving-up never both stand.
"""

from __future__ import annotations

from collections.abc import Sequence

from bwvisu_common import events as ev

# After these, a job's forwards are gone for good.
TERMINAL = (ev.JobEnded, ev.JobCancelRequested, ev.JobSubmitFailed)
# A gateway's answers (or keyhole-api's giving up in its stead): each speaks only for its gateway.
ANSWERS = (ev.PortsForwarded, ev.PortsUnavailable, ev.ForwardsRemoved)


def is_current(history: Sequence[ev.Event], assignment_id: str) -> bool:
    """True if the assignment is the job's newest word and nobody answered it yet.

    A redelivered assignment that was answered, one keyhole-api gave up on, one superseded by
    a newer assignment, or one for a job that ended is not acted on again.
    A late answer from another gateway (one the job moved away from) does not count.
    """
    ids = [e.event_id for e in history]
    if assignment_id not in ids:
        return False
    assigned = history[ids.index(assignment_id)]
    gateway = assigned.gateway if isinstance(assigned, ev.PortsAssigned) else ""
    later = history[ids.index(assignment_id) + 1 :]
    return not any(isinstance(e, (ev.PortsAssigned, *TERMINAL))
                   or (isinstance(e, ANSWERS) and e.gateway == gateway) for e in later)


def forwarded_after_all(history: Sequence[ev.Event], assignment_id: str) -> bool:
    """True if the assignment's gateway confirmed it (PortsForwarded) before anything superseded it."""
    ids = [e.event_id for e in history]
    if assignment_id not in ids:
        return False
    assigned = history[ids.index(assignment_id)]
    for event in history[ids.index(assignment_id) + 1 :]:
        if isinstance(event, (ev.PortsAssigned, *TERMINAL)):
            return False
        if isinstance(event, ANSWERS) and event.gateway == getattr(assigned, "gateway", None):
            return isinstance(event, ev.PortsForwarded)
    return False
