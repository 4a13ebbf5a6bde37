"""Several scheduler-adapters at once on real nats-server and etcd, Slurm scripted: each job is
submitted once whichever replica takes it, and one replica polls Slurm."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.etcd_election import EtcdElection
from bwvisu_common.adapters.jetstream import STREAM, JetStreamEventStore, connect_nats
from bwvisu_common.settings import Settings, load_settings
from bwvisu_common.state_keys import WATCHER_ROLE, token_key
from bwvisu_common.templates import FileTemplates
from scheduler_adapter.adapters.slurm import PRIVATE_UMASK, SlurmCli
from scheduler_adapter.domain.render import SubmitConfig
from scheduler_adapter.handlers import JobHandlers
from scheduler_adapter.ports import CommandResult
from scheduler_adapter.service import run
from tests.conftest import Server
from tests.fakes.command_runner import FakeCommandRunner, fake_id
from tests.samples import NO_METRICS_PORTS

pytestmark = pytest.mark.integration


@dataclass
class Slurm:
    """One Slurm behind every replica's command runner: sbatch queues, squeue --name finds."""

    sbatch_takes: float = 0.0
    jobs: list[tuple[str, str, str]] = field(default_factory=list)  # (job name, Slurm id, script)
    cancelled: list[str] = field(default_factory=list)  # Slurm ids, once per scancel

    def runner(self) -> FakeCommandRunner:
        runner = FakeCommandRunner().on(["id", "--", "*"], fake_id({"alice": (1001, ["alice"])}))
        runner.on([*PRIVATE_UMASK, "sudo", "-n", "-u", "alice", "sbatch", "**"], self._sbatch)
        runner.on(["squeue", "**"], self._squeue)
        runner.on(["sudo", "-n", "-u", "alice", "scancel", "*"], self._scancel)
        return runner

    def _scancel(self, argv: list[str], _: str | None) -> CommandResult:
        self.cancelled.append(argv[-1])
        return CommandResult(0, "", "")

    async def _sbatch(self, argv: list[str], script: str | None) -> CommandResult:
        await asyncio.sleep(self.sbatch_takes)
        name = next(a.split("=", 1)[1] for a in argv if a.startswith("--job-name="))
        slurm_id = str(100 + len(self.jobs))
        self.jobs.append((name, slurm_id, script or ""))
        return CommandResult(0, f"{slurm_id}\n", "")

    def _squeue(self, argv: list[str], _: str | None) -> CommandResult:
        names = [a.split("=", 1)[1] for a in argv if a.startswith("--name=")]
        found = [slurm_id for name, slurm_id, _ in self.jobs if name in names]
        return CommandResult(0, "".join(f"{i}\n" for i in found), "")

    def submitted(self, job_id: str) -> list[tuple[str, str, str]]:
        return [job for job in self.jobs if job[0] == f"bwvisu-{job_id}"]


@pytest.fixture
async def elections(etcd_server: Server) -> AsyncIterator[list[EtcdElection]]:
    """One election per replica, under a prefix of this test's own."""
    prefix = f"/test-{uuid.uuid4().hex[:8]}/"
    made = [EtcdElection([(etcd_server.host, etcd_server.port)], f"replica-{i}", prefix=prefix)
            for i in range(2)]
    yield made
    for election in made:
        await election.close()


def replica(events: JetStreamEventStore, state: EtcdStateStore, slurm: Slurm,
            election: EtcdElection | None) -> JobHandlers:
    return JobHandlers(events, state, SlurmCli(slurm.runner()), FileTemplates(),
                       SubmitConfig(home_prefix="/home"), election=election)


def submitted(job_id: str) -> ev.JobSubmitted:
    return ev.JobSubmitted(job_id=job_id, uid="alice", template_name="port-echo", variables={"seconds": "1"})


async def queued(events: JetStreamEventStore, job_id: str) -> list[ev.JobQueued]:
    return [e for _, e in await events.read_job(job_id) if isinstance(e, ev.JobQueued)]


async def all_queued(events: JetStreamEventStore, jobs: list[str]) -> bool:
    return all([await queued(events, job_id) for job_id in jobs])


async def test_replicas_sharing_the_durable_consumer_submit_and_cancel_every_job_once(
    nats_server: Server, event_store: JetStreamEventStore, state_store: EtcdStateStore,
    elections: list[EtcdElection]
) -> None:
    slurm = Slurm(sbatch_takes=0.02)
    durable = f"replicas-{uuid.uuid4().hex[:6]}"
    stop = asyncio.Event()
    # Each replica on its own connection, as separate processes are.
    connections = [await connect_nats([nats_server.url], f"replica-{i}") for i in range(len(elections))]
    handled: list[list[int]] = [[] for _ in elections]

    def counted(i: int, handlers: JobHandlers) -> Callable[[int, ev.AnyEvent], Awaitable[None]]:
        async def handle(seq: int, event: ev.AnyEvent) -> None:
            handled[i].append(seq)
            await handlers.handle(seq, event)
        return handle

    consumers = [asyncio.create_task(JetStreamEventStore(nc).consume(
        durable, counted(i, replica(event_store, state_store, slurm, election)), stop))
        for i, (nc, election) in enumerate(zip(connections, elections, strict=True))]
    jobs = [f"j{i}" for i in range(12)]
    try:
        for job_id in jobs:
            await event_store.append([submitted(job_id)], expected_version=0)
        await until(lambda: all_queued(event_store, jobs), "every job queued")
        for job_id in jobs:
            await event_store.append([ev.JobCancelRequested(job_id=job_id)])
        await until(lambda: everything_acked(event_store, durable), "every event handled")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*consumers, return_exceptions=True), 5)
        for nc in connections:
            await nc.close()
    for job_id in jobs:
        assert len(slurm.submitted(job_id)) == 1, job_id
        assert len(await queued(event_store, job_id)) == 1, job_id
    assert sorted(slurm.cancelled) == sorted(slurm_id for _, slurm_id, _ in slurm.jobs), "one scancel each"
    seqs = [seq for one in handled for seq in one]
    assert len(seqs) == len(set(seqs)) == 3 * len(jobs), "each event to one replica (no ack was late)"


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(0.05)


async def everything_acked(events: JetStreamEventStore, durable: str) -> bool:
    info = await events.nats.jetstream().consumer_info(STREAM, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_a_job_taken_by_two_replicas_at_once_is_submitted_once(
    event_store: JetStreamEventStore, state_store: EtcdStateStore, elections: list[EtcdElection]
) -> None:
    # The same JobSubmitted in two replicas' hands at once: JetStream delivers it again when the
    # first one's ack is late (a slow command node), while the first still submits it.
    slurm = Slurm(sbatch_takes=0.5)
    a, b = (replica(event_store, state_store, slurm, e) for e in elections)
    event = submitted("j1")
    seq = await event_store.append([event], expected_version=0)
    await asyncio.wait_for(asyncio.gather(a.on_submitted(event, seq), b.on_submitted(event, seq)), 15)
    jobs = slurm.submitted("j1")
    assert len(jobs) == 1, "one Slurm job for one submission"
    assert [q.slurm_id for q in await queued(event_store, "j1")] == [jobs[0][1]]
    token = await state_store.get_secret(token_key("j1"))
    assert token is not None and token.decode() in jobs[0][2], "the running job's token is the one kept"


def adapter_settings(tmp_path: Path, nats: Server, etcd: Server) -> Settings:
    path = tmp_path / "bwvisu.json"
    path.write_text(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],
        "nats-servers": [nats.url], "etcd-servers": [f"{etcd.host}:{etcd.port}"],
        "state-dir": str(tmp_path), "credentials": {"required": False, "tls": False},
        "scheduler": {"poll-interval": 0.2}, "metrics": NO_METRICS_PORTS,
    }))
    return load_settings(path)


def polls(runner: FakeCommandRunner) -> int:
    """The watcher's squeue calls: every job at once (not a look-up of one job)."""
    def whole_queue(argv: list[str]) -> bool:
        return any(a.startswith("--Format=") for a in argv) and not any(a.startswith("--jobs=") for a in argv)

    return sum(1 for c in runner.calls_of("squeue") if whole_queue(c.argv))


async def next_poller(runners: dict[int, FakeCommandRunner], within: float) -> int:
    """The replica that polls next, within `within` seconds."""
    before = {i: polls(r) for i, r in runners.items()}
    deadline = time.monotonic() + within
    while True:
        moved = [i for i, r in runners.items() if polls(r) > before[i]]
        if moved:
            assert len(moved) == 1, f"replicas {moved} all polled"
            return moved[0]
        assert time.monotonic() < deadline, f"no replica polled within {within:.0f} s"
        await asyncio.sleep(0.02)


async def only_one_polls(runners: dict[int, FakeCommandRunner], poller: int, seconds: float) -> None:
    before = {i: polls(r) for i, r in runners.items()}
    await asyncio.sleep(seconds)
    after = {i: polls(r) for i, r in runners.items()}
    assert after[poller] - before[poller] >= 3, "the watcher goes on polling"
    assert all(after[i] == before[i] for i in runners if i != poller), f"only replica {poller} polls"


async def test_one_replica_polls_slurm_and_a_standby_takes_over_within_5_s(
    tmp_path: Path, nats_server: Server, etcd_server: Server, event_store: JetStreamEventStore
) -> None:
    # The etcd server is shared: earlier tests may have left a read model under the default prefix.
    store = await EtcdStateStore.connect(etcd_server.host, etcd_server.port)
    try:
        await store.wipe_projection()
    finally:
        await store.close()
    conf = adapter_settings(tmp_path, nats_server, etcd_server)
    runners = {i: FakeCommandRunner().on(["squeue", "**"], "") for i in range(3)}
    stops = {i: asyncio.Event() for i in runners}
    tasks = {i: asyncio.create_task(run(conf, stop=stops[i], runner=runners[i])) for i in runners}
    try:
        watcher = await next_poller(runners, within=30)
        await only_one_polls(runners, watcher, 1.5)

        stops[watcher].set()  # stopped: it gives the role up on the way out
        await asyncio.wait_for(tasks.pop(watcher), 10)
        del runners[watcher]
        watcher = await next_poller(runners, within=5)
        await only_one_polls(runners, watcher, 1.5)

        tasks.pop(watcher).cancel()  # its run cancelled outright
        del runners[watcher]
        watcher = await next_poller(runners, within=5)
        await only_one_polls(runners, watcher, 1.0)
    finally:
        for stop in stops.values():
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values(), return_exceptions=True), 15)


def start_adapter(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "scheduler_adapter", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)


async def test_a_killed_watcher_is_replaced_within_5_s(tmp_path: Path, nats_server: Server,
                                                       etcd_server: Server) -> None:
    """SIGKILL: no resign, no revoke; its lease runs out and a standby takes the role."""
    config = tmp_path / "bwvisu.json"
    config.write_text(json.dumps({
        "bwvisu-home-prefix": "/home",
        # No sshd there: each poll fails, and a replica's first poll says so in its log.
        "command-nodes": [{"ip": "127.0.0.1", "port": 1, "name": "nowhere"}],
        "nats-servers": [nats_server.url], "etcd-servers": [f"{etcd_server.host}:{etcd_server.port}"],
        "state-dir": str(tmp_path), "scheduler": {"poll-interval": 0.2},
        "credentials": {"required": False, "tls": False}, "metrics": NO_METRICS_PORTS,
    }))
    logs = [tmp_path / f"adapter{i}.log" for i in range(2)]
    procs = [start_adapter(config, log) for log in logs]
    observer = EtcdElection([(etcd_server.host, etcd_server.port)], "observer")
    try:
        by_pid = {str(p.pid): (p, log) for p, log in zip(procs, logs, strict=True)}

        async def watcher_pid() -> str | None:
            holder = await observer.holder(WATCHER_ROLE)
            return None if holder is None else holder.split("/")[1]

        deadline = time.monotonic() + 30
        while (pid := await watcher_pid()) not in by_pid or "cannot poll" not in by_pid[pid][1].read_text():
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [log.read_text()[-2000:] for log in logs]
            await asyncio.sleep(0.1)
        standby = next(other for other in by_pid if other != pid)
        assert "cannot poll Slurm" not in by_pid[standby][1].read_text(), "a standby does not poll"
        by_pid[pid][0].kill()
        killed = time.monotonic()
        while await watcher_pid() != standby or "cannot poll Slurm" not in by_pid[standby][1].read_text():
            assert time.monotonic() - killed < 5, by_pid[standby][1].read_text()[-2000:]
            await asyncio.sleep(0.05)
        print(f"the standby polled {time.monotonic() - killed:.1f} s after the watcher was killed")
    finally:
        await observer.close()
        for proc in procs:
            proc.kill()
            proc.wait()
