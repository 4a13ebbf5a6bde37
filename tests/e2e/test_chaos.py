"""High availability, proven by chaos: session lifecycles on the HA minicluster under a seeded adversary.

bwvisu runs on mw0-mw2 (tests/e2e/ha.py). Several workers at once run short port-echo sessions
(submit, `available`, answer through the gateway with the job's own id, end by themselves) through
whichever runner-api answers, while the adversary (tests/e2e/adversary.py) kills and cuts things.
Afterwards nothing may be lost or left behind. BWVISU_CHAOS_JOBS sets the number of lifecycles.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bwvisu_common import events as ev
from bwvisu_common.connect import open_stores
from tests.e2e.adversary import Adversary, Fault
from tests.e2e.conftest import Minicluster
from tests.e2e.ha import HaSystem, ha_system

# Part of `make test`; `make chaos` runs it alone (BWVISU_CHAOS_SEED=<seed> replays a run).
pytestmark = pytest.mark.timeout(15 * 60)

JOBS = int(os.environ.get("BWVISU_CHAOS_JOBS", "200"))
WORKERS = 8
SERVES = 60  # seconds a session serves unless cancelled
BUDGET = 13 * 60.0  # seconds for the workload; the checks take the rest of the 15 minutes
Job = dict[str, Any]


@pytest.fixture(scope="module")
def ha(minicluster: Minicluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaSystem]:
    with ha_system(minicluster, tmp_path_factory.mktemp("bwvisu-ha")) as system:
        yield system


@dataclass
class Record:
    accepted: list[str] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # reached `available` and greeted with its own id
    cancel_sent: set[str] = field(default_factory=set)  # then its owner asked to cancel it
    cancelled: set[str] = field(default_factory=set)  # ... and runner-api took the cancel
    problems: list[str] = field(default_factory=list)


class Runners:
    """runner-api on every middleware node, used as the portal does: a request goes to the next when
    one cannot be reached, and a read of a job's state also when it got no answer in time."""

    def __init__(self, system: HaSystem) -> None:
        api = system.settings.runner_api
        password = Path(api.password_file).read_text().strip()
        self.urls = [f"http://{n.ip}:{api.port}" for n in system.nodes]
        # As the portal: a node whose link is down drops the SYN, so give up on it after 3 s.
        self.http = httpx.AsyncClient(auth=(api.user, password), timeout=httpx.Timeout(5, connect=3))
        self.current = 0  # the replica that answered last is asked first

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        again = httpx.TimeoutException if method == "GET" else (httpx.ConnectError, httpx.ConnectTimeout)
        for step in range(len(self.urls)):
            index = (self.current + step) % len(self.urls)
            with contextlib.suppress(httpx.ConnectError, again):
                answer = await self.http.request(method, self.urls[index] + path, **kwargs)
                self.current = index
                return answer
        return None


def greeting(host: str, port: int, secret: str) -> str:
    with socket.create_connection((host, port), timeout=5) as conn:
        f = conn.makefile("rwb")
        f.write(secret.encode() + b"\n")
        f.flush()
        return f.readline().decode().strip()


@dataclass
class Probe:
    """A session started the moment a fault goes in: how long until the system serves again."""

    fault: Fault
    submitted: float | None = None  # seconds from the injection to the first accepted submit
    available: float | None = None  # ... to that session's `available`


async def lifecycle(runners: Runners, record: Record, probe: Probe | None = None) -> None:
    """One session: submit, wait for `available`, be greeted through the gateway, cancel it (as its
    owner ends a session), wait until it is over.

    A probe submits again until a submit is accepted, and looks at its session more often."""
    # It serves SERVES seconds unless cancelled: long enough to be greeted through its gateway even
    # when a fault held its `available` back; a session never greeted ends by itself, COMPLETED.
    serves = {"seconds": str(SERVES), "runtime": "3"}
    body = {"uid": "alice", "template-name": "port-echo", "variables": serves}
    job_id = await submit(runners, body, again=probe is not None)
    if job_id is None:
        return
    record.accepted.append(job_id)
    if probe is not None:
        probe.submitted = time.monotonic() - probe.fault.at
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            got = await runners.call("GET", f"/jobs/{job_id}", params={"uid": "alice"})
            job: Job = got.json() if got is not None and got.status_code == 200 else {}
            if job.get("state") == "available" and job_id not in record.answered:
                if probe is not None and probe.available is None:
                    probe.available = time.monotonic() - probe.fault.at
                service = job["services"][0]
                with contextlib.suppress(OSError):
                    line = await asyncio.to_thread(greeting, service["external-ip"], service["external-port"],
                                                   str(job["connect"]["secret"]))
                    if line.split()[1:2] == [job_id]:
                        record.answered.add(job_id)
            over = job.get("state") == "finished"
            if job_id in record.answered and job_id not in record.cancelled and not over:
                record.cancel_sent.add(job_id)  # before: a lost answer may hide a cancel that took
                cancelled = await runners.call("DELETE", f"/jobs/{job_id}", params={"uid": "alice"})
                if cancelled is not None and cancelled.status_code == 200:
                    record.cancelled.add(job_id)
            if job.get("state") == "finished":
                return
        await asyncio.sleep(0.5 if probe is None else 0.1)
    record.problems.append(f"{job_id}: not finished within 240 s")


async def submit(runners: Runners, body: Job, again: bool) -> str | None:
    """The job id of an accepted submit; None if not accepted (then it is not a job of ours)."""
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(httpx.HTTPError):
            r = await runners.call("POST", "/jobs", json=body, timeout=httpx.Timeout(90, connect=3))
            if r is not None and r.status_code == 200:
                return str(r.json()["job-id"])
        if not again or time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.1)


async def workload(runners: Runners, record: Record, stop: asyncio.Event, faults_done: asyncio.Event) -> None:
    """At least JOBS lifecycles, and sessions keep coming until every fault ran (within BUDGET)."""
    started = time.monotonic()
    remaining = [JOBS]

    async def worker() -> None:
        while (remaining[0] > 0 or not faults_done.is_set()) and time.monotonic() - started < BUDGET:
            remaining[0] -= 1
            await lifecycle(runners, record)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    stop.set()


def recovery(probes: list[Probe], what: str) -> list[float]:
    """Per fault: seconds from its injection to its probe's accepted submit (or `available`)."""
    return [v for v in (getattr(p, what) for p in probes) if v is not None]


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def p50_max(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.1f} s, max {max(values):.1f} s" if values else "none"


@contextlib.asynccontextmanager
async def stores(system: HaSystem) -> AsyncIterator[tuple[Any, Any]]:
    async with contextlib.AsyncExitStack() as stack:
        events, _ = await open_stores(system.settings, stack, "scheduler-adapter")
        _, state = await open_stores(system.settings, stack, "bwvisu-status")
        yield events, state


def ending(job_id: str, record: Record) -> tuple[str, ...]:
    """How the job may end: cancelled once runner-api took its cancel, by itself if none was asked."""
    if job_id in record.cancelled:
        return ("CANCELLED",)
    return ("CANCELLED", "COMPLETED") if job_id in record.cancel_sent else ("COMPLETED",)


async def leftovers(system: HaSystem, record: Record) -> list[str]:
    """Everything the accepted jobs may not leave behind, said in words (empty: nothing left)."""
    found = []
    mc = system.minicluster
    tag = system.settings.scheduler.job_tag
    async with stores(system) as (events, state):
        for job_id in record.accepted:
            ended = [e for _, e in await events.read_job(job_id) if isinstance(e, ev.JobEnded)]
            if not ended:
                found.append(f"{job_id}: lost (never finished)")
            elif ended[-1].slurm_state not in (expected := ending(job_id, record)):
                found.append(f"{job_id}: ended {ended[-1].slurm_state}, not {' or '.join(expected)}")
            if job_id not in record.answered:
                found.append(f"{job_id}: never answered through its gateway with its own id")
        held = await state.reservations()
        found += [f"reservation {k} held by {o}" for k, o in held.items() if o in record.accepted]
        found += [f"token {n}" for n in await state.secret_names("token/")
                  if any(j in n for j in record.accepted)]
    for gw in mc.gateway_nodes:
        out = mc.in_host(gw, ["iptables", "-w", "-t", "nat", "-S"]).stdout
        found += [f"{gw}: {line}" for line in out.splitlines() if tag in line]
    squeue = mc.ssh("login1", ["squeue", "--noheader", "--all", "--format=%j"]).stdout
    found += [f"Slurm job {name}" for name in squeue.split() if name.startswith(tag + "-")]
    return found


async def test_sessions_survive_the_adversary_and_nothing_is_left(ha: HaSystem,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    adversary = Adversary.planned(ha)
    print(f"\nchaos: seed {adversary.seed} (set BWVISU_CHAOS_SEED={adversary.seed} to replay), "
          f"{len(adversary.faults)} faults, {JOBS} lifecycles", flush=True)
    runners = Runners(ha)
    record = Record()
    stop = asyncio.Event()
    faults_done = asyncio.Event()

    probes: list[Probe] = []
    probing: list[asyncio.Task[None]] = []

    def injected(fault: Fault) -> None:
        probes.append(Probe(fault))
        probing.append(asyncio.create_task(lifecycle(runners, record, probes[-1])))

    async def attack() -> None:
        try:
            await adversary.run(stop, start_after=20, gap=(5, 15), injected=injected)
            await asyncio.gather(*probing)
        finally:
            faults_done.set()

    try:
        await asyncio.gather(workload(runners, record, stop, faults_done), attack())
    finally:
        stop.set()
        ha.restore_links()
        await runners.http.aclose()
    for fault in adversary.faults:
        if fault.error:
            record.problems.append(f"fault {fault.name!r}: {fault.error}")
    left = await leftovers(ha, record)
    ran = [f for f in adversary.faults if f.at]
    with capsys.disabled():  # shown by `make test` too, also when the test passes
        for probe in probes:
            print(f"chaos: {probe.fault.name}: a session started then was accepted after "
                  f"{_seconds(probe.submitted)}, `available` after {_seconds(probe.available)}")
        submitted, available = p50_max(recovery(probes, "submitted")), p50_max(recovery(probes, "available"))
        print(f"chaos: recovery, first accepted submit after a fault: {submitted}")
        print(f"chaos: recovery, first `available` after a fault: {available}")
        print(f"chaos: seed {adversary.seed}: {len(record.accepted)} accepted, {len(record.answered)} "
              f"answered, {len(ran)}/{len(adversary.faults)} faults, {len(record.problems)} problems, "
              f"{len(left)} left behind; recovery: submit {submitted}, `available` {available}", flush=True)
    assert len(record.accepted) >= JOBS, f"only {len(record.accepted)} of {JOBS} sessions accepted"
    assert not record.problems, "\n".join(record.problems)
    assert not left, "\n".join(left)
    assert len(ran) == len(adversary.faults), "the workload ended before every fault ran"
