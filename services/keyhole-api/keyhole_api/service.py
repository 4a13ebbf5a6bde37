"""KeyholeService: verify a job's signed request, reserve ports, wait for the agent's forward."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bwvisu_common import events as ev
from bwvisu_common.errors import BwvisuError
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.projections import FINISHED, SUBMITTED, JobView
from bwvisu_common.projector import LiveJobs
from bwvisu_common.settings import Settings
from bwvisu_common.state_keys import (
    NODE_PORTS,
    gateway_ports,
    grant_key,
    host_of,
    node_port_key,
    port_key,
    port_of,
    token_key,
)
from keyhole_api.domain.allocate import gateway_order, pick_forwards
from keyhole_api.domain.verify import (
    JOB_ID,
    PortRequest,
    Refused,
    check_request,
    check_signature,
    check_timestamp,
    parse_body,
)
from keyhole_api.health import GatewayHealth

log = logging.getLogger(__name__)
LOG_INTERVAL = 10.0  # seconds; at most LOG_BURST unauthenticated refusals logged in each
LOG_BURST = 10
MAX_REFUSALS_REMEMBERED = 100_000  # (job, reason) pairs already recorded as PortsRefused


class NoCapacity(BwvisuError):
    """No live gateway could forward the ports (none alive, ranges full, agents failing)."""


class GrantPending(BwvisuError):
    """The job's grant is being made by another request; the client should ask again."""


@dataclass
class Allocation:
    gateway: str
    forwards: list[ev.Forward]
    keys: list[str]


@dataclass
class Tuning:
    start_wait: float = 20.0  # how long a job may take to show up as running
    agent_timeout: float = 10.0  # how long an agent may take to forward
    attempts: int = 4  # assignments tried before giving up
    picks_per_gateway: int = 8  # reservation races lost before trying the next gateway
    grant_wait: float = 10.0  # how long a retry waits for a grant another request is making
    stale_grant: float = 90.0  # a grant without any event for this long was left by a dead replica


@dataclass
class _Avoid:
    gateways: set[str] = field(default_factory=set)
    external: set[tuple[str, int]] = field(default_factory=set)
    internal: set[int] = field(default_factory=set)


class KeyholeService:
    """The one use case of keyhole-api: grant a running job its forwarded ports."""

    def __init__(self, settings: Settings, events: EventStore, state: StateStore, jobs: LiveJobs,
                 health: GatewayHealth, clock: Callable[[], float] = time.time,
                 tuning: Tuning | None = None) -> None:
        self._settings = settings
        self._events = events
        self._state = state
        self._jobs = jobs
        self._health = health
        self._clock = clock
        self._tuning = tuning or Tuning()
        self._gateways = {g.label: g for g in settings.gateway_nodes}
        self._seen: dict[str, float] = {}  # signatures already used -> when they expire
        self._refusals_recorded: set[tuple[str, str]] = set()
        self.unauthenticated: Counter[str] = Counter()  # refusals before authentication, by kind
        self._log_window = (float("-inf"), 0)  # (start, refusals in it) for logging them

    async def request_ports(self, job_id: str, path: str, timestamp: str | None,
                            signature: str | None, body: bytes) -> dict[str, object]:
        """The answer for the client, or Refused (4xx) / NoCapacity or GrantPending (503).

        Idempotent: while the job's grant stands, a retry (the same signed request again, or
        a fresh one) gets the same ports, rebuilt from the job's read model.
        """
        window = self._settings.keyhole_api.timestamp_window
        try:
            token = await self._state.get_secret(token_key(job_id)) if JOB_ID.fullmatch(job_id) else None
            if token is None:
                raise Refused(404, "no such job, or it has ended", kind="unknown-job")
            check_timestamp(timestamp, self._clock(), window)
            assert timestamp is not None
            check_signature(token, "POST", path, timestamp, body, signature)
        except Refused as refusal:
            # Not recorded: whoever sent it is not known to be the job (DESIGN.md §6).
            self.refuse_unauthenticated(refusal.kind, job_id, refusal.reason)
            raise
        replayed = self._seen_before(str(signature), window)
        try:
            req = parse_body(body)
            job = await self._running(job_id)
            check_request(req, job, max_ports=self._settings.keyholed_max_forwarders_per_job,
                          suffix=self._settings.forwarding_hostname_suffix)
            if replayed or not await self._state.reserve([grant_key(job_id)], job_id):
                answer = await self._standing(job_id, req, may_take_over=not replayed)
                if answer is not None:
                    return answer
        except Refused as refusal:
            log.warning("job %r: refused (%d): %s", job_id, refusal.status, refusal.reason)
            # Recorded once per job and reason, never for a replay: the job's own token must not
            # let its user grow the stream (which drops its oldest events, other users' history).
            if not replayed and self._first_refusal(job_id, refusal.reason):
                await self._events.append([ev.PortsRefused(job_id=job_id, reason=refusal.reason)])
            raise
        try:
            return await self._grant(job, req)
        except BaseException:
            await self._state.release_job(job_id, [grant_key(job_id)])  # a later retry may try again
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

    async def _standing(self, job_id: str, req: PortRequest, *,
                        may_take_over: bool) -> dict[str, object] | None:
        """The answer of the job's standing grant, waiting while another request makes it.

        None: the grant was given back (or found stuck) and is now ours to make.
        """
        deadline = self._clock() + self._tuning.grant_wait
        while True:
            view = self._jobs.get(job_id)
            if view is not None and view.services and view.gateway in self._gateways:
                if len(view.services) != req.count:
                    raise Refused(409, f"{len(view.services)} port(s) were already granted to this job; "
                                       f"a job gets one grant")
                log.info("job %r: answering again with its standing grant on %s", job_id, view.gateway)
                return self._answer(job_id, view.gateway, [
                    ev.Forward(internal_port=s.internal_port, external_port=s.external_port)
                    for s in view.services])
            if view is not None and view.state == FINISHED:
                raise Refused(409, "job ended while its ports were being forwarded")
            if not may_take_over:
                if grant_key(job_id) not in await self._state.reservations(grant_key(job_id)):
                    raise Refused(409, "replayed request, and no grant stands to answer it with")
            elif await self._take_over(job_id, view):
                return None
            left = deadline - self._clock()
            if left <= 0:
                raise GrantPending("the job's ports are still being forwarded; ask again")
            await self._jobs.wait_for(job_id, lambda j: bool(j.services) or j.state == FINISHED,
                                      min(left, 1.0))

    async def _take_over(self, job_id: str, view: JobView | None) -> bool:
        """Reserve the grant if it was given back, or if it is stuck (its maker died mid-way)."""
        if await self._state.reserve([grant_key(job_id)], job_id):
            return True
        updated = view.updated_at.timestamp() if view is not None and view.updated_at else None
        if updated is None or self._clock() - updated < self._tuning.stale_grant:
            return False
        log.warning("job %r: taking over a grant without progress for %.0f s", job_id,
                    self._clock() - updated)
        await self._state.release_job(job_id, [grant_key(job_id)])
        return await self._state.reserve([grant_key(job_id)], job_id)

    async def _running(self, job_id: str) -> JobView:
        """The job once the lifecycle shows it started (the watcher may lag behind the script)."""
        job = await self._jobs.wait_for(job_id, lambda j: j.state != SUBMITTED, self._tuning.start_wait)
        job = job or self._jobs.get(job_id)
        if job is None:
            raise Refused(409, "job is not known as running")
        return job

    async def _grant(self, job: JobView, req: PortRequest) -> dict[str, object]:
        job_id = job.job_id
        await self._events.append([ev.PortsRequested(job_id=job_id, count=req.count, nodes=req.nodes)])
        avoid, last = _Avoid(), "no gateway agent is alive"
        for _ in range(self._tuning.attempts):
            alloc = await self._reserve(job_id, req, avoid)
            if alloc is None:
                break
            seq = await self._events.append([ev.PortsAssigned(
                job_id=job_id, gateway=alloc.gateway, nodes=req.nodes, forwards=alloc.forwards)])
            view = await self._jobs.wait_for(job_id, lambda j, s=seq: _settled(j, s),  # type: ignore[misc]
                                             self._tuning.agent_timeout)
            if view is not None and view.services and view.gateway == alloc.gateway:
                log.info("job %s: %d port(s) forwarded on %s", job_id, req.count, alloc.gateway)
                return self._answer(job_id, alloc.gateway, alloc.forwards)
            await self._state.release_job(job_id, alloc.keys)
            if view is None:
                last = f"gateway {alloc.gateway} did not answer in time"
                self._health.forget(alloc.gateway)
                avoid.gateways.add(alloc.gateway)
                await self._events.append([ev.PortsUnavailable(
                    job_id=job_id, gateway=alloc.gateway, forwards=alloc.forwards, reason=last)])
            elif view.state == FINISHED:
                raise Refused(409, "job ended while its ports were being forwarded")
            else:
                last = f"ports in use on {alloc.gateway} or the job's nodes"
                avoid.external |= {(alloc.gateway, f.external_port) for f in alloc.forwards}
                avoid.internal |= {f.internal_port for f in alloc.forwards}
            log.info("job %s: %s; trying again", job_id, last)
        raise NoCapacity(f"could not forward {req.count} port(s): {last}")

    async def _reserve(self, job_id: str, req: PortRequest, avoid: _Avoid) -> Allocation | None:
        """Reserve ports on the least loaded live gateway, atomically; None if nothing fits."""
        alive = [g for g in self._health.alive() if g in self._gateways and g not in avoid.gateways]
        held = await self._state.reservations(gateway_ports())
        load = Counter(host_of(key) for key in held)
        r = self._settings.keyholed_port_range
        for gateway in gateway_order(alive, load):
            for _ in range(self._tuning.picks_per_gateway):
                taken_ext = {port_of(k) for k in held if k.startswith(gateway_ports(gateway))}
                taken_ext |= {p for g, p in avoid.external if g == gateway}
                # One read of every node's held ports, not one per node.
                node_held = await self._state.reservations(NODE_PORTS)
                taken_int = set(avoid.internal) | {
                    port_of(k) for k in node_held if host_of(k) in req.nodes}
                forwards = pick_forwards(req.count, (r.min, r.max), taken_external=taken_ext,
                                         taken_internal=taken_int,
                                         static=self._settings.debug.keyholed_static_forwarding)
                if forwards is None:
                    break
                keys = [port_key(gateway, f.external_port) for f in forwards]
                keys += [node_port_key(n, f.internal_port) for n in req.nodes for f in forwards]
                if await self._state.reserve(keys, job_id):
                    return Allocation(gateway, forwards, keys)
                held = await self._state.reservations(gateway_ports())  # lost a race: look again
        return None

    def _answer(self, job_id: str, gateway: str, forwards: list[ev.Forward]) -> dict[str, object]:
        ip = self._gateways[gateway].external_ip
        return {"job-id": job_id, "gateway": gateway, "forwards": [
            {"internal-port": f.internal_port, "external-port": f.external_port, "external-ip": ip,
             "gateway": gateway} for f in forwards]}


def _settled(job: JobView, assigned_seq: int) -> bool:
    """The agent answered the assignment at `assigned_seq` (forwarded or not), or the job ended."""
    return job.seq >= assigned_seq and (bool(job.services) or not job.ports_granted
                                        or job.state == FINISHED)
