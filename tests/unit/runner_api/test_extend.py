"""POST /jobs/<id>/extend: the owner's running job gets more run time within the site's maximum,
with scheduler-adapter's extension handling behind it (Slurm scripted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from bwvisu_common import events as ev
from bwvisu_common.live_jobs import LiveJobs
from runner_api.app import create_app
from runner_api.handlers import Jobs
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.extensions import Extensions
from scheduler_adapter.ports import CommandResult
from tests.fakes.command_runner import FakeCommandRunner
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.job_logs import FakeJobLogs
from tests.fakes.state_store import InMemoryStateStore
from tests.fakes.templates import FakeTemplates
from tests.fakes.users import FakeUserDirectory
from tests.unit.runner_api.test_api import AUTH, PASSWORD

MAX = 60


@dataclass
class Api:
    client: httpx.AsyncClient
    store: InMemoryEventStore
    live: LiveJobs
    slurm: FakeCommandRunner

    async def job(self, state: str = "running", uid: str = "alice") -> str:
        job_id = ev.new_job_id()
        history: list[ev.Event] = [
            ev.JobSubmitted(job_id=job_id, uid=uid, template_name="xpra-desktop",
                            variables={"runtime": "30"}),
            ev.JobQueued(job_id=job_id, slurm_id="4711")]
        if state != "submitted":
            history.append(ev.JobStarted(job_id=job_id, nodes=["cn0"]))
        if state == "finished":
            history.append(ev.JobEnded(job_id=job_id, slurm_state="COMPLETED", exit_code=0))
        await self.store.append(history)
        await self.live.wait_for(job_id, lambda j: j.seq > 0 and len(history) <= j.seq, 2.0)
        return job_id

    async def extend(self, job_id: str, **body: object) -> httpx.Response:
        return await self.client.post(f"/jobs/{job_id}/extend", json=body, headers=AUTH)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    store, state = InMemoryEventStore(), InMemoryStateStore()
    live = LiveJobs(store, state)
    slurm = FakeCommandRunner().on(["squeue", "**"], "30:00\n").on(["sudo", "-n", "scontrol", "**"], "")
    extensions = Extensions(store, SlurmCli(slurm, "bwvisu"), MAX)

    async def scheduler(seq: int, event: ev.Event) -> None:
        if isinstance(event, ev.JobExtensionRequested):
            await extensions.on_requested(event)

    stop = asyncio.Event()
    tasks = [asyncio.create_task(live.run()), asyncio.create_task(store.consume("s", scheduler, stop))]
    jobs = Jobs(store, live, FakeUserDirectory({"alice", "bob"}), FakeTemplates({"xpra-desktop"}),
                FakeJobLogs(), secrets=state, max_extension=MAX, extend_timeout=2.0)
    app = create_app(jobs, {"gw0": "192.0.2.30"}, "bwvisu-web", PASSWORD)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield Api(client, store, live, slurm)
    stop.set()
    for task in tasks:
        task.cancel()


async def test_the_owner_extends_a_running_job_up_to_the_sites_maximum(api: Api) -> None:
    job_id = await api.job()
    r = await api.extend(job_id, uid="alice", minutes=45)
    assert r.status_code == 200, r.text
    assert r.json() == {"response": "time added", "minutes": 45, "extended-minutes": 45, "time-limit": 75}
    r = await api.extend(job_id, uid="alice", minutes=16)
    assert r.status_code == 400 and r.json() == {
        "response": "minutes: between 1 and 15 more minutes may be added (the site allows 60 in all)",
        "field": "minutes"}
    assert (await api.extend(job_id, uid="alice", minutes=15)).json()["time-limit"] == 90
    r = await api.extend(job_id, uid="alice", minutes=1)
    assert r.status_code == 400 and "extended by the most this site allows (60 minutes)" in r.text
    limits = [c.argv[-1] for c in api.slurm.calls_of("scontrol")]
    assert limits == ["TimeLimit=75", "TimeLimit=90"], "Slurm was asked only within the maximum"


async def test_nobody_else_extends_and_only_a_running_job(api: Api) -> None:
    job_id = await api.job()
    r = await api.extend(job_id, uid="bob", minutes=10)
    assert r.status_code == 404 and r.json() == {"response": "no such running job"}
    assert (await api.extend("nosuchjob", uid="alice", minutes=10)).status_code == 404
    r = await api.extend(await api.job(state="submitted"), uid="alice", minutes=10)
    assert r.status_code == 409 and r.json() == {"response": "the session is not running"}
    r = await api.extend(await api.job(state="finished"), uid="alice", minutes=10)
    assert r.status_code == 404
    assert api.slurm.calls == [], "no request reached Slurm"


@pytest.mark.parametrize(("body", "field"), [
    ({"uid": "alice"}, "minutes"), ({"minutes": 5}, "uid"), ({"uid": "alice", "minutes": "5"}, "minutes"),
    ({"uid": "alice", "minutes": True}, "minutes"), ({"uid": "alice", "minutes": 0}, "minutes"),
    ({"uid": "alice", "minutes": 5, "user": "x"}, "user"), ({"uid": "al ice", "minutes": 5}, "uid"),
])
async def test_a_bad_body_names_its_field(api: Api, body: dict[str, object], field: str) -> None:
    job_id = await api.job()
    r = await api.extend(job_id, **body)
    assert r.status_code == 400 and r.json()["field"] == field, r.text


async def test_slurms_refusal_and_a_site_without_extensions_are_clear(api: Api) -> None:
    job_id = await api.job()
    api.slurm.on(["sudo", "-n", "scontrol", "**"], CommandResult(1, "", "Access/permission denied\n"))
    api.slurm.rules.insert(0, api.slurm.rules.pop())  # before the rule that says yes
    r = await api.extend(job_id, uid="alice", minutes=10)
    assert r.status_code == 409
    assert r.json()["response"] == ("Slurm did not extend it: scontrol update of job 4711 failed: "
                                    "Access/permission denied")
    assert api.live.get(job_id).extended_minutes == 0


async def test_without_the_sites_permission_nothing_is_asked(api: Api) -> None:
    job_id = await api.job()
    store_before = len(await api.store.read_job(job_id))
    no_extensions = Jobs(api.store, api.live, FakeUserDirectory({"alice"}), FakeTemplates({"xpra-desktop"}),
                         FakeJobLogs())
    app = create_app(no_extensions, {}, "bwvisu-web", PASSWORD)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        r = await client.post(f"/jobs/{job_id}/extend", json={"uid": "alice", "minutes": 5}, headers=AUTH)
    assert r.status_code == 403 and r.json() == {"response": "this site does not allow extending sessions"}
    assert len(await api.store.read_job(job_id)) == store_before
