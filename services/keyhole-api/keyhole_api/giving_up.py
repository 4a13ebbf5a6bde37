"""Giving up on an assignment its gateway did not answer in time, so that a late answer cannot stand.

The gateway agent confirms an assignment (PortsForwarded) only while it still awaits its answer,
appending on the history it read; keyhole-api gives up (PortsUnavailable) on the same terms. So
exactly one of the two goes in, and whoever loses the race learns it from the history.
"""

from __future__ import annotations

from bwvisu_common import events as ev
from bwvisu_common.assignments import forwarded_after_all, is_current
from bwvisu_common.errors import ConcurrencyConflict, DependencyUnavailable
from bwvisu_common.ports import EventStore

ATTEMPTS = 5  # appends lost to other events of the job before this is left to the next look


async def give_up(events: EventStore, assigned: ev.PortsAssigned, reason: str) -> bool:
    """PortsUnavailable for `assigned`; True once it stands for nothing forwarded (given up now, or
    refused, superseded or ended meanwhile), False if its gateway forwarded it after all."""
    for _ in range(ATTEMPTS):
        numbered = await events.read_job(assigned.job_id)
        history = [e for _, e in numbered]
        if not is_current(history, assigned.event_id):
            return not forwarded_after_all(history, assigned.event_id)
        try:
            await events.append([ev.PortsUnavailable(job_id=assigned.job_id, gateway=assigned.gateway,
                                                     forwards=assigned.forwards, reason=reason)],
                                expected_version=numbered[-1][0])
            return True
        except ConcurrencyConflict:
            continue  # something else happened to the job: read it again
    raise DependencyUnavailable(f"job {assigned.job_id}: assignment {assigned.event_id} to "
                                f"{assigned.gateway} cannot be settled: the job's history keeps changing")
