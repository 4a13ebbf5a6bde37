"""runner-api over HTTP with in-memory stores and a scripted scheduler: the API contract."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from bwvisu_common import events as ev
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.reasons import UNAVAILABLE
from bwvisu_common.state_keys import session_secret_key
from runner_api.app import create_app
from runner_api.handlers import Jobs
from tests.conditions import eventually
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.job_logs import FakeJobLogs
from tests.fakes.state_store import InMemoryStateStore
from tests.fakes.templates import FakeTemplates
from tests.fakes.users import FakeUserDirectory
from tests.samples import sample

PASSWORD = "s3cret-web"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"bwvisu-web:{PASSWORD}".encode()).decode()}
USERS = {"alice", "bob"}
SECRET = "0f" * 32
CONNECT_URLS = {"xpra-desktop": "http://{host}:{port}/index.html?autoconnect=true&password={secret}"}


def fake_users() -> FakeUserDirectory:
    return FakeUserDirectory(USERS, refused={"bwvisu": "bwvisu is the middleware's own account"})


UNREACHABLE = "the cluster cannot be reached: no command node answered: login0 (10.200.0.10:22): refused"
REFUSAL = ("sbatch refused the job: sudo: unable to resolve host login7.internal; "
           "sbatch: error: Batch job submission failed: Invalid account on 10.200.0.1 specified")


class ScriptedScheduler:
    """Answers JobSubmitted as scheduler-adapter would: queued, refused, or silence."""

    def __init__(self, store: InMemoryEventStore, state: InMemoryStateStore | None = None) -> None:
        self.store = store
        self.state = state
        self.mode = "queue"
        self.slurm_ids = iter(range(100, 10_000))

    async def __call__(self, seq: int, event: ev.Event) -> None:
        if not isinstance(event, ev.JobSubmitted) or self.mode == "silent":
            return
        if self.mode == "queue":
            if self.state is not None:
                await self.state.put_secret(session_secret_key(event.job_id), SECRET.encode(), 600)
            answer: ev.Event = ev.JobQueued(job_id=event.job_id, slurm_id=str(next(self.slurm_ids)))
        elif self.mode == "refuse":
            answer = ev.JobSubmitFailed(job_id=event.job_id, kind="rejected", reason=REFUSAL)
        else:
            answer = ev.JobSubmitFailed(job_id=event.job_id, reason=UNREACHABLE, kind="unavailable")
        await self.store.append([answer], seq)


@pytest.fixture
def logs() -> FakeJobLogs:
    return FakeJobLogs()


@pytest.fixture
def stores() -> tuple[InMemoryEventStore, InMemoryStateStore]:
    return InMemoryEventStore(), InMemoryStateStore()


@pytest.fixture
def live(stores: tuple[InMemoryEventStore, InMemoryStateStore]) -> LiveJobs:
    """runner-api's read model: a test waits on it for an event it appended to take effect."""
    return LiveJobs(*stores)


@pytest.fixture
async def api(
    logs: FakeJobLogs, stores: tuple[InMemoryEventStore, InMemoryStateStore], live: LiveJobs,
) -> AsyncIterator[tuple[httpx.AsyncClient, InMemoryEventStore, ScriptedScheduler, FakeUserDirectory]]:
    store, state = stores
    users, scheduler = fake_users(), ScriptedScheduler(store, state)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(live.run()), asyncio.create_task(store.consume("s", scheduler, stop))]
    templates = FakeTemplates({"xpra-desktop", "jupyter"})
    jobs = Jobs(store, live, users, templates, logs, submit_timeout=0.5, secrets=state)
    app = create_app(jobs, {"gw0": "192.0.2.30"}, "bwvisu-web", PASSWORD,
                     connect_urls=CONNECT_URLS.get)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client, store, scheduler, users
    stop.set()
    for task in tasks:
        task.cancel()


async def state_of(client: httpx.AsyncClient, job_id: str, state: str) -> bool:
    """Whether runner-api reports the job in `state` (its read model caught up that far)."""
    return bool((await client.get(f"/jobs/{job_id}", headers=AUTH)).json()["state"] == state)


def body(**overrides: object) -> dict[str, object]:
    return {"uid": "alice", "template-name": "xpra-desktop", "variables": {"runtime": "30"}, **overrides}


async def test_submit_then_read_list_and_cancel(api):
    client, store, _, _ = api
    timed = sample("bwvisu_submit_duration_seconds_count")
    r = await client.post("/jobs", json=body(), headers=AUTH)
    assert r.status_code == 200, r.text
    assert sample("bwvisu_submit_duration_seconds_count") == timed + 1
    job_id = r.json()["job-id"]
    got = (await client.get(f"/jobs/{job_id}", headers=AUTH)).json()
    assert got == {
        "job-id": job_id, "batch-script": {"template-name": "xpra-desktop", "variables": {"runtime": "30"}},
        "services": [], "state": "submitted", "uid": "alice", "details": "queued as Slurm job 100",
        "why": {"kind": "queued", "text": "100"},
    }
    assert (await client.get("/jobs", headers=AUTH)).json() == {"jobs": [job_id]}
    assert (await client.get("/jobs?uid=bob", headers=AUTH)).json() == {"jobs": []}
    r = await client.delete(f"/jobs/{job_id}?uid=bob", headers=AUTH)
    assert r.status_code == 404, "bob cannot cancel alice's job"
    r = await client.delete(f"/jobs/{job_id}", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"response": "job cancelled"}
    assert isinstance((await store.read_job(job_id))[-1][1], ev.JobCancelRequested)


async def test_an_available_job_lists_its_services_with_the_gateways_external_ip(api):
    client, store, _, _ = api
    job_id = (await client.post("/jobs", json=body(), headers=AUTH)).json()["job-id"]
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    await store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                        ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=fwd),
                        ev.PortOpen(job_id=job_id, external_port=21001)])
    await eventually(lambda: state_of(client, job_id, "available"), "the read model has the open port")
    got = (await client.get(f"/jobs/{job_id}", headers=AUTH)).json()
    assert got["state"] == "available"
    assert got["services"] == [{"internal-port": 20001, "external-port": 21001, "external-ip": "192.0.2.30"}]


async def test_only_the_owner_named_in_the_query_gets_the_secret_and_the_url(api):
    client, store, _, _ = api
    job_id = (await client.post("/jobs", json=body(), headers=AUTH)).json()["job-id"]
    mine = (await client.get(f"/jobs/{job_id}?uid=alice", headers=AUTH)).json()
    assert mine["connect"] == {"secret": SECRET}, "no port yet: the secret, but no URL"
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    await store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                        ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=fwd)])
    await eventually(lambda: state_of(client, job_id, "running"), "the read model has the forward")
    mine = (await client.get(f"/jobs/{job_id}?uid=alice", headers=AUTH)).json()
    assert mine["connect"] == {
        "secret": SECRET, "url": f"http://192.0.2.30:21001/index.html?autoconnect=true&password={SECRET}"}
    anyone = await client.get(f"/jobs/{job_id}", headers=AUTH)
    assert anyone.status_code == 200 and SECRET not in anyone.text
    bobs = await client.get(f"/jobs/{job_id}?uid=bob", headers=AUTH)
    assert bobs.status_code == 404 and SECRET not in bobs.text
    await store.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED", exit_code=0)])
    await eventually(lambda: state_of(client, job_id, "finished"), "the read model has the end")
    assert "connect" not in (await client.get(f"/jobs/{job_id}?uid=alice", headers=AUTH)).json()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(variables={"image": "$(reboot)"}), "variables.image"),
        (body(variables={"image": "../../etc/passwd"}), "variables.image"),
        (body(**{"template-name": "../xpra-desktop"}), "template-name"),
        (body(**{"template-name": "nope"}), "template-name"),
        (body(uid="alice;id"), "uid"),
        (body(extra=1), "extra"),
        ({"uid": "alice"}, "template-name"),
        ([1, 2], "body"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_records_nothing(api, payload, field):
    client, store, _, _ = api
    r = await client.post("/jobs", json=payload, headers=AUTH)
    assert r.status_code == 400 and r.json()["field"] == field, r.text
    assert field in r.json()["response"]
    assert await store.last_seq() == 0


async def test_not_json_is_a_400(api):
    client, store, _, _ = api
    r = await client.post("/jobs", content=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"


async def test_unknown_user_is_a_404_and_records_nothing(api):
    client, store, _, users = api
    r = await client.post("/jobs", json=body(uid="mallory"), headers=AUTH)
    assert r.status_code == 404 and "mallory" in r.json()["response"]
    assert await store.last_seq() == 0
    assert (await client.get("/cluster/check-user/mallory", headers=AUTH)).status_code == 404
    r = await client.get("/cluster/check-user/bob", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"response": "success"}


async def test_a_refused_account_gets_the_reason_and_records_nothing(api):
    client, store, _, _ = api
    r = await client.post("/jobs", json=body(uid="bwvisu"), headers=AUTH)
    assert r.status_code == 404 and "middleware's own account" in r.json()["response"]
    assert await store.last_seq() == 0
    r = await client.get("/cluster/check-user/bwvisu", headers=AUTH)
    assert r.status_code == 404 and "middleware's own account" in r.json()["response"]


async def test_known_users_are_not_asked_again_for_each_submit(api):
    client, _, _, users = api
    for _ in range(3):
        assert (await client.post("/jobs", json=body(), headers=AUTH)).status_code == 200
    assert users.asked == ["alice"]


async def test_an_unreachable_cluster_is_a_503(api):
    client, store, scheduler, users = api
    users.down = True
    r = await client.post("/jobs", json=body(uid="bob"), headers=AUTH)
    assert r.status_code == 503 and r.json()["response"].endswith("try again later")
    users.down = False
    scheduler.mode = "fail"
    r = await client.post("/jobs", json=body(), headers=AUTH)
    assert r.status_code == 503
    assert r.json()["response"] == f"submission failed: {UNAVAILABLE}"


async def test_a_refused_job_tells_the_client_what_sbatch_said_without_internal_hosts(api):
    client, store, scheduler, _ = api
    scheduler.mode = "refuse"
    r = await client.post("/jobs", json=body(), headers=AUTH)
    said = r.json()["response"]
    assert r.status_code == 400 and said.startswith(
        "submission failed: the scheduler refused the job: Invalid account")
    assert "login" not in said and "10.200" not in said and "sudo" not in said
    batches = store.batches(0)
    history = await anext(batches)
    await batches.aclose()
    failed = history[-1][1]
    assert isinstance(failed, ev.JobSubmitFailed) and failed.reason == REFUSAL  # the history keeps it all
    got = (await client.get(f"/jobs/{failed.job_id}", headers=AUTH)).json()
    assert got["details"] == said and got["state"] == "finished"
    assert got["why"] == {"kind": "submit-failed", "text": said.removeprefix("submission failed: ")}


async def test_a_silent_scheduler_is_a_503_and_the_job_is_recorded_as_failed(api):
    client, store, scheduler, _ = api
    scheduler.mode = "silent"
    r = await client.post("/jobs", json=body(), headers=AUTH)
    assert r.status_code == 503
    batches = store.batches(0)
    history = await anext(batches)
    await batches.aclose()
    assert [type(e).__name__ for _, e in history] == ["JobSubmitted", "JobSubmitFailed"]
    assert history[-1][1].kind == "unavailable"
    assert (await client.get("/jobs", headers=AUTH)).json() == {"jobs": []}


async def test_unknown_and_finished_jobs(api):
    client, store, _, _ = api
    assert (await client.get("/jobs/nope", headers=AUTH)).status_code == 404
    assert (await client.delete("/jobs/nope", headers=AUTH)).json() == {"response": "no such running job"}
    job_id = (await client.post("/jobs", json=body(), headers=AUTH)).json()["job-id"]
    await store.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED", exit_code=0)])
    await eventually(lambda: state_of(client, job_id, "finished"), "the read model has the end")
    assert (await client.delete(f"/jobs/{job_id}", headers=AUTH)).status_code == 404


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("auth", [{}, basic("bwvisu-web", "wrong"), basic("root", PASSWORD)])
async def test_every_job_endpoint_needs_the_password(api, auth):
    client, store, _, _ = api
    for method, url in [("POST", "/jobs"), ("GET", "/jobs"), ("GET", "/jobs/x"), ("DELETE", "/jobs/x"),
                        ("GET", "/cluster/check-user/alice")]:
        r = await client.request(method, url, json=body(), headers=auth)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), (method, url)
    assert await store.last_seq() == 0


async def test_the_log_tail_is_read_as_the_jobs_owner_only(api, logs):
    client, _, _, _ = api
    job_id = (await client.post("/jobs", json=body(), headers=AUTH)).json()["job-id"]
    logs.write("alice", job_id, "".join(f"alice {job_id} line {i}\n" for i in range(3)))
    r = await client.get(f"/jobs/{job_id}/log?lines=2&uid=alice", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"log": f"alice {job_id} line 1\nalice {job_id} line 2\n"}
    assert (await client.get(f"/jobs/{job_id}/log?uid=bob", headers=AUTH)).status_code == 404
    assert (await client.get(f"/jobs/{job_id}/log?lines=0", headers=AUTH)).status_code == 400


async def test_a_job_answers_its_last_activity_from_when_it_answered_then_from_its_traffic(api):
    client, store, _, _ = api
    job_id = (await client.post("/jobs", json=body(), headers=AUTH)).json()["job-id"]
    assert "last-activity" not in (await client.get(f"/jobs/{job_id}", headers=AUTH)).json()
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    opened = ev.PortOpen(job_id=job_id, external_port=21001, gateway="gw0")
    await store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                        ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=fwd), opened])
    await eventually(lambda: state_of(client, job_id, "available"), "the read model has the open port")
    got = (await client.get(f"/jobs/{job_id}", headers=AUTH)).json()
    assert got["last-activity"] == opened.time.isoformat(), "no traffic yet: idle since it answered"
    later = opened.time + timedelta(minutes=3)
    await store.append([ev.SessionActivity(job_id=job_id, gateway="gw0", last_activity=later)])

    async def traffic_shown() -> bool:
        answer = (await client.get(f"/jobs/{job_id}", headers=AUTH)).json()
        return bool(answer.get("last-activity") == later.isoformat())

    await eventually(traffic_shown, "the job's answer carries its last traffic")


async def test_a_submission_takes_no_worker_thread(api, monkeypatch: pytest.MonkeyPatch):
    """The credentials check runs on the event loop: no hand-over to a thread and back per request."""
    import fastapi.dependencies.utils as dependencies

    async def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dependency ran in a worker thread")

    monkeypatch.setattr(dependencies, "run_in_threadpool", no_thread)
    client, _, _, _ = api
    assert (await client.post("/jobs", json=body(), headers=AUTH)).status_code == 200
    assert (await client.post("/jobs", json=body(), headers={})).status_code == 401
