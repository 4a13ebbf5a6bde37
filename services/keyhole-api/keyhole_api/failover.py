"""GatewayFailover: moves the forwards of running jobs off gateways whose agent fell silent.

The decisions are domain/failover.py's; this module reads the jobs and the reservations, reserves
ports on a live gateway and appends the move. Every keyhole-api replica runs one: the append is
conditional on the job's last event, so exactly one replica moves a job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bwvisu_common.errors import ConcurrencyConflict
from bwvisu_common.heartbeats import HEARTBEAT_TIMEOUT
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.settings import Settings
from bwvisu_common.state_keys import gateway_ports, held_by
from keyhole_api.domain.allocate import Avoid, Reservation, candidate_gateways
from keyhole_api.domain.failover import Move, decide_move, moved, pick_moved, still_dead, stranded
from keyhole_api.ports import GatewayLiveness

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0  # seconds between looks at the gateways' liveness
CONFIRM_DEAD = 1.5  # a gateway not alive this long (more than a heartbeat) is dead: its jobs move
RETRY_AFTER = 10.0  # a job whose move did not take is not moved again sooner than this


class GatewayFailover:
    """Watches for jobs stranded on a dead gateway and moves their forwards to a live one."""

    def __init__(self, settings: Settings, events: EventStore, state: StateStore, jobs: LiveJobs,
                 gateways: GatewayLiveness, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._events = events
        self._state = state
        self._jobs = jobs
        self._live = gateways
        self._clock = clock
        self._known = [g.label for g in settings.gateway_nodes]
        self._tried: dict[str, float] = {}  # job -> when its last move was appended or tried
        self._dead_since: dict[str, float] = {}  # gateway -> since when it has not been alive

    async def run_forever(self, warm_up: float = HEARTBEAT_TIMEOUT, every: float = CHECK_EVERY) -> None:
        # Until every live agent had time to beat, a gateway not heard yet is not known to be dead.
        await asyncio.sleep(warm_up)
        while True:
            try:
                await self.move_once()
            except Exception:  # NATS or etcd may be back next time
                log.exception("gateway failover round failed; trying again")
            await asyncio.sleep(every)

    async def move_once(self) -> int:
        """Move the forwards of every stranded job that may be moved now; how many moved."""
        alive = [g for g in self._live.alive() if g in self._known]
        now = self._clock()
        self._dead_since, dead = still_dead(self._known, alive, self._dead_since, now, CONFIRM_DEAD)
        self._tried = {j: t for j, t in self._tried.items() if now - t < RETRY_AFTER}
        count = 0
        for job_id in stranded(self._jobs.all(), alive, dead):
            if job_id in self._tried:
                continue
            move = decide_move(await self._events.read_job(job_id), alive)
            if move is not None:
                self._tried[job_id] = now
                count += await self._move(move, alive)
        return count

    async def _move(self, move: Move, alive: list[str]) -> int:
        picked = await self._reserve(move, alive)
        if picked is None:
            log.warning("job %s: gateway %s is dead and no live gateway has room for its forwards",
                        move.job_id, move.from_gateway)
            return 0
        try:
            await self._events.append([moved(move, picked)], expected_version=move.expected_seq)
        except ConcurrencyConflict:
            # Something happened to the job meanwhile (another replica moved it, say): look again.
            await self._state.release_job(move.job_id, picked.keys)
            self._tried.pop(move.job_id, None)
            return 0
        except BaseException:
            await self._state.release_job(move.job_id, picked.keys)
            raise
        dead = held_by(await self._state.reservations(gateway_ports(move.from_gateway)), move.job_id)
        await self._state.release_job(move.job_id, dead)
        log.warning("job %s: gateway %s is dead; its forwards move to %s", move.job_id, move.from_gateway,
                    picked.gateway)
        return 1

    async def _reserve(self, move: Move, alive: list[str]) -> Reservation | None:
        """External ports on the least loaded live gateway, reserved atomically."""
        r = self._settings.keyholed_port_range
        for _ in range(8):  # reservation races lost before giving up for this round
            held = await self._state.reservations(gateway_ports())
            for gateway in candidate_gateways(alive, self._known, Avoid(gateways={move.from_gateway}), held):
                picked = pick_moved(gateway, move.internal_ports, held=held, port_range=(r.min, r.max),
                                    static=self._settings.debug.keyholed_static_forwarding)
                if picked is None:
                    continue
                if await self._state.reserve(picked.keys, move.job_id):
                    return picked
                break  # lost a race: read the reservations again
            else:
                return None
        return None
