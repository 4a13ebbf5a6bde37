"""KeyholeHandlers: verify a job's signed request, reserve ports, wait for the agent's forward.

The decisions are the domain's (verify, grant, allocate); this module does the I/O around them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.read_model import JobView, fold
from bwvisu_common.settings import Settings
from bwvisu_common.state_keys import NODE_PORTS, gateway_ports, grant_key, token_key
from keyhole_api.domain.allocate import Avoid, Reservation, candidate_gateways, pick_reservation
from keyhole_api.domain.grant import ENDED, Grant, Outcome, answer, outcome, settled, standing_grant, stuck
from keyhole_api.domain.verify import (
    JOB_ID,
    PortRequest,
    check_request,
    check_signature,
    check_timestamp,
    parse_body,
)
from keyhole_api.errors import GrantPending, NoCapacity, Refusal, Refused
from keyhole_api.giving_up import give_up
from keyhole_api.ports import GatewayLiveness

log = logging.getLogger(__name__)
LOG_INTERVAL = 10.0  # seconds; at most LOG_BURST unauthenticated refusals logged in each
LOG_BURST = 10
MAX_REFUSALS_REMEMBERED = 100_000  # (job, reason) pairs already recorded as PortsRefused


@dataclass
class Tuning:
    start_wait: float = 20.0  # how long a job may take to show up as running
    agent_timeout: float = 10.0  # how long an agent may take to forward
    attempts: int = 4  # assignments tried before giving up
    picks_per_gateway: int = 8  # reservation races lost before trying the next gateway
    grant_wait: float = 10.0  # how long a retry waits for a grant another request is making
    stale_grant: float = 90.0  # a grant without any event for this long was left by a dead replica


class KeyholeHandlers:
    """The one use case of keyhole-api: grant a running job its forwarded ports."""

    def __init__(self, settings: Settings, events: EventStore, state: StateStore, jobs: LiveJobs,
                 gateways: GatewayLiveness, clock: Callable[[], float] = time.time,
                 tuning: Tuning | None = None) -> None:
        self._settings = settings
        self._events = events
        self._state = state
        self._jobs = jobs
        self._live = gateways
        self._clock = clock
        self._tuning = tuning or Tuning()
        self._gateways = {g.label: g for g in settings.gateway_nodes}
        self._seen: dict[str, float] = {}  # signatures already used -> when they expire
        self._refusals_recorded: set[tuple[str, str]] = set()
        self.unauthenticated: Counter[str] = Counter()  # refusals before authentication, by kind
        self._log_window = (float("-inf"), 0)  # (start, refusals in it) for logging them

    async def request_ports(self, job_id: str, path: str, timestamp: str | None,
                            signature: str | None, body: bytes) -> dict[str, object]:
        """The answer for the client, or Refused / NoCapacity / GrantPending.

        Idempotent: while the job's grant stands, a retry (the same signed request again, or
        a fresh one) gets the same ports, rebuilt from the job's read model.
        """
        await self._authenticate(job_id, path, timestamp, signature, body)
        replayed = self._seen_before(str(signature), self._settings.keyhole_api.timestamp_window)
        try:
            req = parse_body(body)
            job = await self._running(job_id)
            check_request(req, job, max_ports=self._settings.keyholed_max_forwarders_per_job,
                          suffix=self._settings.forwarding_hostname_suffix)
            if replayed or not await self._state.reserve([grant_key(job_id)], job_id):
                standing = await self._standing(job_id, req, may_take_over=not replayed)
                if standing is not None:
                    return self._answer(job_id, standing)
        except Refused as refusal:
            log.warning("job %r: refused (%s): %s", job_id, refusal.why, refusal.reason)
            # Recorded once per job and reason, never for a replay: the job's own token must not
            # let its user grow the stream (which drops its oldest events, other users' history).
            if not replayed and self._first_refusal(job_id, refusal.reason):
                await self._events.append([ev.PortsRefused(job_id=job_id, reason=refusal.reason)])
            raise
        try:
            return self._answer(job_id, await self._grant(job, req))
        except BaseException:
            await self._state.release_job(job_id, [grant_key(job_id)])  # a later retry may try again
            raise

    async def _authenticate(self, job_id: str, path: str, timestamp: str | None,
                            signature: str | None, body: bytes) -> None:
        """Refused unless the request is signed with the job's token, at a fresh timestamp."""
        try:
            token = await self._state.get_secret(token_key(job_id)) if JOB_ID.fullmatch(job_id) else None
            if token is None:
                raise Refused(Refusal.UNKNOWN_JOB, "no such job, or it has ended", kind="unknown-job")
            check_timestamp(timestamp, self._clock(), self._settings.keyhole_api.timestamp_window)
            assert timestamp is not None
            check_signature(token, "POST", path, timestamp, body, signature)
        except Refused as refusal:
            # Not recorded: whoever sent it is not known to be the job (DESIGN.md §6).
            self.refuse_unauthenticated(refusal.kind, job_id, refusal.reason)
            raise

    def _first_refusal(self, job_id: str, reason: str) -> bool:
        """True the first time this process refuses this job for this reason."""
        if len(self._refusals_recorded) > MAX_REFUSALS_REMEMBERED:
            self._refusals_recorded.clear()  # bounded: at worst a refusal is recorded again
        if (job_id, reason) in self._refusals_recorded:
            return False
        self._refusals_recorded.add((job_id, reason))
        return True

    def refuse_unauthenticated(self, kind: str, job_id: str, reason: str) -> None:
        """Count and log a refusal of a request not known to come from the job.

        A flood must not flood the log either: a few lines per interval, then a summary.
        """
        self.unauthenticated[kind or "other"] += 1
        now = self._clock()
        if now - self._log_window[0] >= LOG_INTERVAL:
            if self._log_window[1] > LOG_BURST:
                log.warning("%d more unauthenticated request(s) refused in the last %.0f s (counted in "
                            "/healthz)", self._log_window[1] - LOG_BURST, LOG_INTERVAL)
            self._log_window = (now, 0)
        self._log_window = (self._log_window[0], self._log_window[1] + 1)
        if self._log_window[1] <= LOG_BURST:
            log.warning("refused an unauthenticated request for job %r: %s", job_id[:80], reason)

    def _seen_before(self, signature: str, window: float) -> bool:
        """Whether this signature was verified before: a replay, which may only re-read a grant.

        Only verified signatures are remembered, so the memory grows with the jobs' own
        requests, never with anyone else's; entries go once the timestamp window is over.
        """
        now = self._clock()
        self._seen = {s: t for s, t in self._seen.items() if t > now}
        if signature in self._seen:
            return True
        self._seen[signature] = now + 2 * window + 1
        return False

    async def _standing(self, job_id: str, req: PortRequest, *, may_take_over: bool) -> Grant | None:
        """The job's standing grant, waiting while another request makes it.

        None: the grant was given back (or found stuck) and is now ours to make.
        """
        deadline = self._clock() + self._tuning.grant_wait
        while True:
            view = self._jobs.get(job_id)
            grant = standing_grant(view, req, self._gateways)
            if grant is not None:
                log.info("job %r: answering again with its standing grant on %s", job_id, grant.gateway)
                return grant
            if not may_take_over:
                if grant_key(job_id) not in await self._state.reservations(grant_key(job_id)):
                    raise Refused(Refusal.REPLAYED, "replayed request, and no grant stands to answer it with")
            elif await self._take_over(job_id, view):
                return None
            left = deadline - self._clock()
            if left <= 0:
                raise GrantPending("the job's ports are still being forwarded; ask again")
            await self._jobs.wait_for(job_id, lambda j: bool(j.services) or j.state == JobState.FINISHED,
                                      min(left, 1.0))

    async def _take_over(self, job_id: str, view: JobView | None) -> bool:
        """Reserve the grant if it was given back, or if it is stuck (its maker died mid-way)."""
        if await self._state.reserve([grant_key(job_id)], job_id):
            return True
        updated = view.updated_at.timestamp() if view is not None and view.updated_at else None
        if not stuck(updated, self._clock(), self._tuning.stale_grant):
            return False
        assert updated is not None
        log.warning("job %r: taking over a grant without progress for %.0f s", job_id,
                    self._clock() - updated)
        await self._state.release_job(job_id, [grant_key(job_id)])
        return await self._state.reserve([grant_key(job_id)], job_id)

    async def _running(self, job_id: str) -> JobView:
        """The job once the lifecycle shows it started (the watcher may lag behind the script)."""
        job = await self._jobs.wait_for(job_id, lambda j: j.state != JobState.SUBMITTED,
                                        self._tuning.start_wait)
        job = job or self._jobs.get(job_id)
        if job is None or job.state == JobState.SUBMITTED:
            # This replica's view may be behind, as after its node was cut off from the stream: a
            # refusal ends the job, so the stream's own word decides (unreadable: ask again later).
            job = fold(await self._events.read_job(job_id)) or job
        if job is None:
            raise Refused(Refusal.NOT_RUNNING, "job is not known as running")
        return job

    async def _grant(self, job: JobView, req: PortRequest) -> Grant:
        job_id = job.job_id
        await self._events.append([ev.PortsRequested(job_id=job_id, count=req.count, nodes=req.nodes)])
        avoid, last = Avoid(), "no gateway agent is alive"
        for _ in range(self._tuning.attempts):
            picked = await self._reserve(job_id, req, avoid)
            if picked is None:
                break
            assigned = ev.PortsAssigned(job_id=job_id, gateway=picked.gateway, nodes=req.nodes,
                                        forwards=picked.forwards)
            seq = await self._events.append([assigned])
            view = await self._jobs.wait_for(job_id, lambda j, s=seq: settled(j, s),  # type: ignore[misc]
                                             self._tuning.agent_timeout)
            result = outcome(view, picked.gateway)
            no_answer = f"gateway {picked.gateway} did not answer in time"
            if result is Outcome.NO_ANSWER and not await give_up(self._events, assigned, no_answer):
                result = Outcome.FORWARDED  # it answered just now, after all
            if result is Outcome.FORWARDED:
                log.info("job %s: %d port(s) forwarded on %s", job_id, req.count, picked.gateway)
                return Grant(picked.gateway, picked.forwards)
            await self._state.release_job(job_id, picked.keys)
            if result is Outcome.JOB_ENDED:
                raise Refused(Refusal.NOT_RUNNING, ENDED)
            if result is Outcome.NO_ANSWER:
                last = no_answer
                self._live.forget(picked.gateway)
                avoid.gateways.add(picked.gateway)
            else:
                last = f"ports in use on {picked.gateway} or the job's nodes"
                avoid.ports_of(picked)
            log.info("job %s: %s; trying again", job_id, last)
        raise NoCapacity(f"could not forward {req.count} port(s): {last}")

    async def _reserve(self, job_id: str, req: PortRequest, avoid: Avoid) -> Reservation | None:
        """Reserve ports on the least loaded live gateway, atomically; None if nothing fits."""
        held = await self._state.reservations(gateway_ports())
        r = self._settings.keyholed_port_range
        for gateway in candidate_gateways(self._live.alive(), self._gateways, avoid, held):
            for _ in range(self._tuning.picks_per_gateway):
                node_held = await self._state.reservations(NODE_PORTS)  # one read for every node
                picked = pick_reservation(gateway, req.count, req.nodes, held=held, node_held=node_held,
                                          avoid=avoid, port_range=(r.min, r.max),
                                          static=self._settings.debug.keyholed_static_forwarding)
                if picked is None:
                    break
                if await self._state.reserve(picked.keys, job_id):
                    return picked
                held = await self._state.reservations(gateway_ports())  # lost a race: look again
        return None

    def _answer(self, job_id: str, grant: Grant) -> dict[str, object]:
        return answer(job_id, grant, self._gateways[grant.gateway].external_ip)
