"""KeyholeService: verify a job's signed request, reserve ports, wait for the agent's forward."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bwvisu_common import events as ev
from bwvisu_common.errors import BwvisuError
from bwvisu_common.keyhole import grant_key, node_port_key, port_key
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.projections import FINISHED, SUBMITTED, JobView
from bwvisu_common.projector import LiveJobs
from bwvisu_common.settings import Settings
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


class NoCapacity(BwvisuError):
    """No live gateway could forward the ports (none alive, ranges full, agents failing)."""


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

    async def request_ports(self, job_id: str, path: str, timestamp: str | None,
                            signature: str | None, body: bytes) -> dict[str, object]:
        """The answer for the client, or Refused (4xx) / NoCapacity (503)."""
        window = self._settings.keyhole_api.timestamp_window
        token = await self._state.get_secret(f"token/{job_id}") if JOB_ID.fullmatch(job_id) else None
        if token is None:
            # Not recorded: an event would make up a job that does not exist.
            raise Refused(404, "no such job, or it has ended")
        try:
            check_timestamp(timestamp, self._clock(), window)
            assert timestamp is not None
            check_signature(token, "POST", path, timestamp, body, signature)
            self._check_replay(str(signature), window)
            req = parse_body(body)
            job = await self._running(job_id)
            check_request(req, job, max_ports=self._settings.keyholed_max_forwarders_per_job,
                          suffix=self._settings.forwarding_hostname_suffix)
            if not await self._state.reserve([grant_key(job_id)], job_id):
                raise Refused(409, "ports were already granted to this job")
        except Refused as refusal:
            log.warning("job %s: refused (%d): %s", job_id, refusal.status, refusal.reason)
            await self._events.append([ev.PortsRefused(job_id=job_id, reason=refusal.reason)])
            raise
        try:
            return await self._grant(job, req)
        except BaseException:
            await self._state.release([grant_key(job_id)], job_id)  # a later retry may try again
            raise

    def _check_replay(self, signature: str, window: float) -> None:
        now = self._clock()
        self._seen = {s: t for s, t in self._seen.items() if t > now}
        if signature in self._seen:
            raise Refused(409, "replayed request")
        self._seen[signature] = now + 2 * window + 1

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
                return self._answer(job_id, alloc)
            await self._state.release(alloc.keys, job_id)
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
        held = await self._state.reservations("ports/")
        load = Counter(key.split("/")[1] for key in held)
        r = self._settings.keyholed_port_range
        for gateway in gateway_order(alive, load):
            for _ in range(self._tuning.picks_per_gateway):
                taken_ext = {int(k.rsplit("/", 1)[1]) for k in held if k.startswith(f"ports/{gateway}/")}
                taken_ext |= {p for g, p in avoid.external if g == gateway}
                # One read of every node's held ports, not one per node.
                node_held = await self._state.reservations("nodeports/")
                taken_int = set(avoid.internal) | {
                    int(k.rsplit("/", 1)[1]) for k in node_held if k.split("/")[1] in req.nodes}
                forwards = pick_forwards(req.count, (r.min, r.max), taken_external=taken_ext,
                                         taken_internal=taken_int,
                                         static=self._settings.debug.keyholed_static_forwarding)
                if forwards is None:
                    break
                keys = [port_key(gateway, f.external_port) for f in forwards]
                keys += [node_port_key(n, f.internal_port) for n in req.nodes for f in forwards]
                if await self._state.reserve(keys, job_id):
                    return Allocation(gateway, forwards, keys)
                held = await self._state.reservations("ports/")  # lost a race: look again
        return None

    def _answer(self, job_id: str, alloc: Allocation) -> dict[str, object]:
        ip = self._gateways[alloc.gateway].external_ip
        return {"job-id": job_id, "gateway": alloc.gateway, "forwards": [
            {"internal-port": f.internal_port, "external-port": f.external_port, "external-ip": ip,
             "gateway": alloc.gateway} for f in alloc.forwards]}


def _settled(job: JobView, assigned_seq: int) -> bool:
    """The agent answered the assignment at `assigned_seq` (forwarded or not), or the job ended."""
    return job.seq >= assigned_seq and (bool(job.services) or not job.ports_granted
                                        or job.state == FINISHED)
