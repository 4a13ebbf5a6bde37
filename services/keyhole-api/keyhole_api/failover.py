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
from datetime import UTC, datetime

from bwvisu_common import events as ev
from bwvisu_common.errors import ConcurrencyConflict
from bwvisu_common.heartbeats import HEARTBEAT_TIMEOUT
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.settings import Settings
from bwvisu_common.state_keys import gateway_ports, held_by
from keyhole_api.domain.allocate import Avoid, Reservation, candidate_gateways
from keyhole_api.domain.failover import (
    Move,
    decide_move,
    last_move,
    move_answered,
    move_outcome,
    moved,
    pick_moved,
    still_dead,
    stranded,
    unanswered_moves,
)
from keyhole_api.domain.grant import Outcome
from keyhole_api.giving_up import give_up
from keyhole_api.ports import GatewayLiveness

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0  # seconds between looks at the gateways' liveness
CONFIRM_DEAD = 1.5  # a gateway not alive this long (more than a heartbeat) is dead: its jobs move
RETRY_AFTER = 10.0  # a job whose move did not take is not moved again sooner than this
ANSWER_TIMEOUT = 10.0  # how long the gateway the forwards move to may take to install them
AT_ONCE = 16  # moves under way at once
# A move nobody waits for any more (see unanswered_moves) is given up after this long without an
# answer: well past a move's own wait for the answer and its giving up.
UNANSWERED_AFTER = 3 * ANSWER_TIMEOUT


class GatewayFailover:
    """Watches for jobs stranded on a dead gateway and moves their forwards to a live one."""

    def __init__(self, settings: Settings, events: EventStore, state: StateStore, jobs: LiveJobs,
                 gateways: GatewayLiveness, clock: Callable[[], float] = time.monotonic,
                 answer_timeout: float = ANSWER_TIMEOUT,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._events = events
        self._state = state
        self._jobs = jobs
        self._live = gateways
        self._clock = clock
        self._answer_timeout = answer_timeout
        self._wall_clock = wall_clock
        self._moving = asyncio.Semaphore(AT_ONCE)
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
        moves = []
        for job_id in stranded(self._jobs.all(), alive, dead):
            if job_id in self._tried:
                continue
            move = decide_move(await self._events.read_job(job_id), alive)
            if move is not None:
                self._tried[job_id] = now
                moves.append(move)
        unanswered = [j for j in unanswered_moves(self._jobs.all(), self._wall_clock(), UNANSWERED_AFTER)
                      if j not in self._tried]
        self._tried.update((j, now) for j in unanswered)
        # Together: each waits for its new gateway's answer, and a dead gateway strands many jobs.
        results = await asyncio.gather(*(self._bounded(m, alive) for m in moves),
                                       *(self._settle(j) for j in unanswered), return_exceptions=True)
        results = results[:len(moves)]
        for move, result in zip(moves, results, strict=True):
            if isinstance(result, BaseException):
                log.error("job %s: moving its forwards off %s failed: %r; trying again", move.job_id,
                          move.from_gateway, result)
                self._tried.pop(move.job_id, None)
        return sum(r for r in results if isinstance(r, int))

    async def _bounded(self, move: Move, alive: list[str]) -> int:
        async with self._moving:
            return await self._move(move, alive)

    async def _move(self, move: Move, alive: list[str]) -> int:
        picked = await self._reserve(move, alive)
        if picked is None:
            log.warning("job %s: gateway %s is dead and no live gateway has room for its forwards",
                        move.job_id, move.from_gateway)
            return 0
        assigned = moved(move, picked)
        try:
            seq = await self._events.append([assigned], expected_version=move.expected_seq)
        except ConcurrencyConflict:
            # Something happened to the job meanwhile (another replica moved it, say): look again.
            await self._state.release_job(move.job_id, picked.keys)
            self._tried.pop(move.job_id, None)
            return 0
        except Exception:
            # The answer was lost, not necessarily the move: if it is stored, it needs its ports. If
            # even that cannot be read, they stay held (the gateway's agent frees them at the job's end).
            landed = await self._stored_at(assigned)
            if landed is None:
                await self._state.release_job(move.job_id, picked.keys)
                raise
            seq = landed
        view = await self._jobs.wait_for(move.job_id, lambda j: move_answered(j, seq, picked.gateway),
                                         self._answer_timeout)
        result = move_outcome(view, picked.gateway)
        reason = f"gateway {picked.gateway} did not answer the move in time"
        if result is Outcome.NO_ANSWER and not await give_up(self._events, assigned, reason):
            result = Outcome.FORWARDED  # it answered just now, after all
        if result is not Outcome.FORWARDED:
            await self._not_taken(move, picked, result, reason)
            return 0
        dead = held_by(await self._state.reservations(gateway_ports(move.from_gateway)), move.job_id)
        await self._state.release_job(move.job_id, dead)
        log.warning("job %s: gateway %s is dead; its forwards moved to %s", move.job_id, move.from_gateway,
                    picked.gateway)
        return 1

    async def _settle(self, job_id: str) -> int:
        """Give up on the job's move that nobody waits for, so that the next round moves it again.

        Its ports stay reserved until the job ends: another replica may have given up on it too
        and moved the job since, maybe onto the same ports, which a release here would free."""
        try:
            async with self._moving:
                assigned = last_move([e for _, e in await self._events.read_job(job_id)])
                if assigned is None:
                    return 0
                reason = f"gateway {assigned.gateway} did not answer the move within {UNANSWERED_AFTER:.0f} s"
                if await give_up(self._events, assigned, reason):
                    self._live.forget(assigned.gateway)
                    log.warning("job %s: %s; moving it again", job_id, reason)
                    self._tried.pop(job_id, None)
        except Exception:  # the stream may answer next time: RETRY_AFTER from now
            log.exception("job %s: giving up on its unanswered move failed", job_id)
        return 0

    async def _stored_at(self, event: ev.PortsAssigned) -> int | None:
        """The stream sequence of `event` if the job's history holds it."""
        for seq, stored in await self._events.read_job(event.job_id):
            if stored.event_id == event.event_id:
                return seq
        return None

    async def _not_taken(self, move: Move, picked: Reservation, result: Outcome, reason: str) -> None:
        """The new gateway did not take the forwards (given up on, or refused): free its ports, and
        try again next round."""
        await self._state.release_job(move.job_id, picked.keys)
        if result is Outcome.JOB_ENDED:
            return
        self._tried.pop(move.job_id, None)
        if result is Outcome.NO_ANSWER:
            self._live.forget(picked.gateway)  # dead to the next round, until it beats again
            log.warning("job %s: %s; trying again", move.job_id, reason)
        else:
            log.warning("job %s: gateway %s refused the move; trying again", move.job_id, picked.gateway)

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
