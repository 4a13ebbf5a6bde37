"""One contract, two runners: the fake the portal's tests use, and RunnerApiClient against a real
runner-api app (in-memory stores, a scripted scheduler). If they disagree, the fake is lying."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from bwvisu_common import events as ev
from bwvisu_common.live_jobs import LiveJobs
from runner_api.app import create_app
from runner_api.handlers import Jobs
from tests.fakes.authenticator import USERS
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.job_logs import FakeJobLogs
from tests.fakes.job_runner import TEMPLATES, FakeRunner
from tests.fakes.state_store import InMemoryStateStore
from tests.fakes.templates import FakeTemplates
from tests.fakes.users import FakeUserDirectory
from web_portal.adapters.runner_api import RunnerApiClient
from web_portal.errors import NotFound, Rejected, RunnerUnavailable
from web_portal.ports import JobRunner

PASSWORD = "contract-pw"
MAX_EXTENSION = 30


@dataclass
class Setup:
    runner: JobRunner
    live: LiveJobs
    store: InMemoryEventStore
    logs: FakeJobLogs = field(default_factory=FakeJobLogs)


async def _queue_everything(store: InMemoryEventStore, stop: asyncio.Event) -> None:
    async def answer(seq: int, event: ev.Event) -> None:
        if isinstance(event, ev.JobSubmitted):
            await store.append([ev.JobQueued(job_id=event.job_id, slurm_id="7")], seq)
        if isinstance(event, ev.JobExtensionRequested):  # Slurm's limit was the job's 30 minutes
            await store.append([ev.JobExtended(job_id=event.job_id, request_id=event.event_id,
                                               minutes=event.minutes, time_limit=30 + event.minutes)])

    await store.consume("scheduler", answer, stop)


class RunnerContract:
    @pytest.fixture
    async def setup(self) -> AsyncIterator[Setup]:
        raise NotImplementedError
        yield

    def set_log(self, s: Setup, uid: str, job_id: str, text: str) -> None:
        raise NotImplementedError

    async def test_submit_records_the_job_for_the_user(self, setup: Setup):
        job_id = await setup.runner.submit("alice", "xpra-desktop", {"runtime": "30"})
        job = setup.live.get(job_id) or await setup.live.wait_for(job_id, lambda j: True, 1)
        assert job is not None and job.uid == "alice" and job.template_name == "xpra-desktop"
        assert job.variables == {"runtime": "30"}

    @pytest.mark.parametrize(
        ("uid", "template", "variables", "field"),
        [
            ("alice", "xpra-desktop", {"image": "$(reboot)"}, "variables.image"),
            ("alice", "xpra-desktop", {"image": "../../etc/shadow"}, "variables.image"),
            ("alice", "nope", {}, "template-name"),
            ("alice", "../xpra-desktop", {}, "template-name"),
            ("mallory", "xpra-desktop", {}, "uid"),
        ],
    )
    async def test_refusals_name_the_field(self, setup: Setup, uid, template, variables, field):
        with pytest.raises(Rejected) as err:
            await setup.runner.submit(uid, template, variables)
        assert err.value.field == field
        assert await setup.store.last_seq() == 0

    async def test_only_the_owner_cancels_and_only_a_running_job(self, setup: Setup):
        job_id = await setup.runner.submit("alice", "xpra-desktop", {})
        with pytest.raises(NotFound):
            await setup.runner.cancel(job_id, "bob")
        with pytest.raises(NotFound):
            await setup.runner.cancel("no-such-job", "alice")
        await setup.runner.cancel(job_id, "alice")
        assert (await setup.live.wait_for(job_id, lambda j: j.cancel_requested, 1)) is not None
        await setup.store.append([ev.JobEnded(job_id=job_id, slurm_state="CANCELLED")])
        await setup.live.wait_for(job_id, lambda j: j.state == "finished", 1)
        with pytest.raises(NotFound):
            await setup.runner.cancel(job_id, "alice")

    async def test_only_the_owner_reads_the_log(self, setup: Setup):
        job_id = await setup.runner.submit("alice", "xpra-desktop", {})
        self.set_log(setup, "alice", job_id, "one\ntwo\nthree")
        assert await setup.runner.log_tail(job_id, "alice", 2) == "two\nthree"
        with pytest.raises(NotFound):
            await setup.runner.log_tail(job_id, "bob", 2)

    async def test_only_the_owner_adds_client_addresses_and_only_ipv4(self, setup: Setup):
        job_id = await setup.runner.submit("alice", "xpra-desktop", {})
        assert await setup.runner.allow_client(job_id, "alice", "198.51.100.7") == ["198.51.100.7"]
        await setup.live.wait_for(job_id, lambda j: bool(j.client_addresses), 1)
        assert await setup.runner.allow_client(job_id, "alice", "198.51.100.7") == ["198.51.100.7"]
        with pytest.raises(Rejected) as err:
            await setup.runner.allow_client(job_id, "alice", "2001:db8::1")
        assert err.value.field == "address"
        with pytest.raises(NotFound):
            await setup.runner.allow_client(job_id, "bob", "203.0.113.1")
        await setup.store.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED")])
        await setup.live.wait_for(job_id, lambda j: j.state == "finished", 1)
        with pytest.raises(NotFound):
            await setup.runner.allow_client(job_id, "alice", "203.0.113.1")

    async def test_only_the_owner_extends_a_running_job_within_the_maximum(self, setup: Setup):
        job_id = await setup.runner.submit("alice", "xpra-desktop", {"runtime": "30"})
        with pytest.raises(Rejected, match="not running"):
            await setup.runner.extend(job_id, "alice", 10)
        await setup.store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"])])
        await setup.live.wait_for(job_id, lambda j: j.state == "running", 1)
        with pytest.raises(NotFound):
            await setup.runner.extend(job_id, "bob", 10)
        await setup.runner.extend(job_id, "alice", 20)
        job = await setup.live.wait_for(job_id, lambda j: j.extended_minutes == 20, 1)
        assert job is not None and job.time_limit == 50
        with pytest.raises(Rejected) as err:
            await setup.runner.extend(job_id, "alice", MAX_EXTENSION - 19)
        assert err.value.field == "minutes" and "between 1 and 10 more minutes" in str(err.value)


class TestFakeRunner(RunnerContract):
    @pytest.fixture
    async def setup(self) -> AsyncIterator[Setup]:
        store = InMemoryEventStore()
        live = LiveJobs(store, InMemoryStateStore())
        task = asyncio.create_task(live.run())
        runner = FakeRunner(store, live)
        runner.max_extension = MAX_EXTENSION
        yield Setup(runner, live, store)
        task.cancel()

    def set_log(self, s: Setup, uid: str, job_id: str, text: str) -> None:
        assert isinstance(s.runner, FakeRunner)
        s.runner.logs[job_id] = text

    async def test_an_outage_is_unavailable(self, setup: Setup):
        assert isinstance(setup.runner, FakeRunner)
        setup.runner.down = True
        with pytest.raises(RunnerUnavailable):
            await setup.runner.submit("alice", "xpra-desktop", {})


class TestRunnerApiClient(RunnerContract):
    @pytest.fixture
    async def setup(self) -> AsyncIterator[Setup]:
        store = InMemoryEventStore()
        live = LiveJobs(store, InMemoryStateStore())
        stop = asyncio.Event()
        tasks = [asyncio.create_task(live.run()), asyncio.create_task(_queue_everything(store, stop))]
        logs = FakeJobLogs()
        jobs = Jobs(store, live, FakeUserDirectory(USERS), FakeTemplates(TEMPLATES), logs,
                    submit_timeout=1, max_extension=MAX_EXTENSION, extend_timeout=1)
        app = create_app(jobs, {}, "bwvisu-web", PASSWORD)
        client = RunnerApiClient("http://runner-api", "bwvisu-web", PASSWORD,
                                 transport=httpx.ASGITransport(app=app))
        yield Setup(client, live, store, logs)
        await client.aclose()
        stop.set()
        for task in tasks:
            task.cancel()

    def set_log(self, s: Setup, uid: str, job_id: str, text: str) -> None:
        s.logs.write(uid, job_id, text)

    async def test_an_outage_is_unavailable(self):
        client = RunnerApiClient("http://127.0.0.1:9", "bwvisu-web", PASSWORD)
        with pytest.raises(RunnerUnavailable):
            await client.submit("alice", "xpra-desktop", {})
        await client.aclose()

    async def test_a_wrong_password_is_unavailable_not_a_crash(self, setup: Setup):
        assert isinstance(setup.runner, RunnerApiClient)
        wrong = RunnerApiClient("http://runner-api", "bwvisu-web", "wrong",
                                transport=setup.runner._http._transport)  # type: ignore[attr-defined]
        with pytest.raises(RunnerUnavailable, match="cannot log in"):
            await wrong.cancel("x", "alice")
