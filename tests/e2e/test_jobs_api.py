"""runner-api as the portal uses it, against real Slurm and SSH: the bwVisu job API end to end."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args
from bwvisu_common import events as ev
from tests.e2e.conftest import BwvisuSystem, Minicluster

pytestmark = pytest.mark.timeout(600)

HOSTILE = [
    "$(id)", "`id`", "a;id", "a\nid", "a'b", 'a"b', "../etc/passwd", "x/../../y", "a b", "a|b",
    "a&b", "a>b", "${HOME}", "\u0430lice", "\uff41", "a\u200bb", "x" * 300, "a\\b", "a*b", "~root",
]


@pytest.fixture(scope="module")
def api(bwvisu_system: BwvisuSystem) -> Iterator[httpx.Client]:
    with httpx.Client(**runner_api_client_args(bwvisu_system.settings), timeout=90) as client:
        yield client


def wait_state(api: httpx.Client, job_id: str, states: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job}"
        time.sleep(0.3)


def slurm_jobs_of(system: BwvisuSystem, minicluster: Minicluster) -> list[str]:
    """Names of the Slurm jobs this system tagged (other test sessions may share the cluster)."""
    out = minicluster.ssh("login1", ["squeue", "--noheader", "--all", "--states=all", "--format=%j"])
    assert out.returncode == 0, out.stderr
    tag = system.settings.scheduler.job_tag + "-"
    return [name for name in out.stdout.split() if name.startswith(tag)]


def test_submit_run_cancel_and_read_back(api: httpx.Client, minicluster: Minicluster) -> None:
    r = api.post("/jobs", json={"uid": "alice", "template-name": "sleep",
                                "variables": {"seconds": "300", "runtime": "10"}})
    assert r.status_code == 200, r.text
    job_id = r.json()["job-id"]
    assert job_id in api.get("/jobs", params={"uid": "alice"}).json()["jobs"]
    job = wait_state(api, job_id, {"running"})
    assert job["uid"] == "alice" and job["batch-script"] == {
        "template-name": "sleep", "variables": {"seconds": "300", "runtime": "10"}}
    assert api.delete(f"/jobs/{job_id}", params={"uid": "bob"}).status_code == 404
    assert api.delete(f"/jobs/{job_id}").json() == {"response": "job cancelled"}
    job = wait_state(api, job_id, {"finished"})
    assert "CANCELLED" in job["details"]
    assert job_id not in api.get("/jobs").json()["jobs"]
    r = api.delete(f"/jobs/{job_id}")
    assert r.status_code == 404 and r.json()["response"] == "no such running job"


def test_a_job_that_exits_by_itself_is_finished_and_its_log_readable(api: httpx.Client) -> None:
    r = api.post("/jobs", json={"uid": "bob", "template-name": "sleep", "variables": {"seconds": "1"}})
    job_id = r.json()["job-id"]
    job = wait_state(api, job_id, {"finished"})
    assert "COMPLETED" in job["details"] or "ABSENT" in job["details"], job
    log = api.get(f"/jobs/{job_id}/log", params={"uid": "bob"})
    assert log.status_code == 200 and f"bwvisu job {job_id}" in log.json()["log"]
    assert "as bob" in log.json()["log"]


async def submitted_since(system: BwvisuSystem, seq: int) -> list[ev.JobSubmitted]:
    async with system.events() as events:
        if await events.last_seq() <= seq:
            return []
        batches = events.batches(seq)
        batch = await anext(batches)
        await batches.aclose()
        return [e for _, e in batch if isinstance(e, ev.JobSubmitted)]


async def test_hostile_values_are_refused_and_reach_neither_the_log_nor_slurm(
    api: httpx.Client, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    before = set(slurm_jobs_of(bwvisu_system, minicluster))
    async with bwvisu_system.events() as events:
        seq = await events.last_seq()
    for value in HOSTILE:
        body = {"uid": "alice", "template-name": "sleep", "variables": {"seconds": value}}
        r = api.post("/jobs", json=body)
        assert r.status_code == 400, (value, r.text)
        assert r.json()["field"] == "variables.seconds"
    r = api.post("/jobs", json={"uid": "alice", "template-name": "no-such-app", "variables": {}})
    assert r.status_code == 400 and r.json()["field"] == "template-name"
    r = api.post("/jobs", json={"uid": minicluster.missing_user, "template-name": "sleep",
                                "variables": {"seconds": "1"}})
    assert r.status_code == 404 and minicluster.missing_user in r.json()["response"]
    assert api.get(f"/cluster/check-user/{minicluster.missing_user}").status_code == 404
    assert api.get("/cluster/check-user/alice").json() == {"response": "success"}
    assert await submitted_since(bwvisu_system, seq) == []
    assert set(slurm_jobs_of(bwvisu_system, minicluster)) <= before  # earlier tests' jobs may end


def test_no_command_node_is_a_503_then_submits_work_again(
    api: httpx.Client, minicluster: Minicluster
) -> None:
    for host in minicluster.login_nodes:
        minicluster.stop_sshd(host)
    try:
        r = api.post("/jobs", json={"uid": "bob", "template-name": "sleep",
                                    "variables": {"seconds": "1", "runtime": "1"}})
        assert r.status_code == 503, r.text
        said = r.json()["response"]
        assert "try again later" in said  # what to do, not which host failed how
        assert not any(name in said or ip in said for name, ip in minicluster.hosts.items()), said
    finally:
        minicluster.repair()
    deadline = time.monotonic() + 60
    while True:
        r = api.post("/jobs", json={"uid": "bob", "template-name": "sleep", "variables": {"seconds": "1"}})
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200, r.text


def test_sbatchs_refusal_reaches_the_client_without_internal_hosts(
    api: httpx.Client, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    r = api.post("/jobs", json={"uid": "alice", "template-name": "sleep",
                                "variables": {"seconds": "1", "partition": "nope-partition"}})
    said = r.json()["response"]
    assert r.status_code == 400, said
    assert said.startswith("submission failed: the scheduler refused the job: "), said
    assert "partition" in said.lower() and "sbatch: error" not in said
    assert not any(name in said or ip in said for name, ip in minicluster.hosts.items()), said


def test_a_restarted_runner_api_gives_the_same_answers(
    api: httpx.Client, bwvisu_system: BwvisuSystem
) -> None:
    job_id = api.post("/jobs", json={"uid": "alice", "template-name": "sleep",
                                     "variables": {"seconds": "120"}}).json()["job-id"]
    before = wait_state(api, job_id, {"running"})
    listing = api.get("/jobs").json()
    old = bwvisu_system.wait_pid("runner_api")
    os.kill(old, signal.SIGKILL)
    bwvisu_system.wait_pid("runner_api", other_than=old)
    deadline = time.monotonic() + 60
    while True:
        try:
            after = api.get(f"/jobs/{job_id}")
            if after.status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "runner-api did not come back"
        time.sleep(0.5)
    assert after.json() == before
    # The same jobs, less any that ended meanwhile (earlier tests' short jobs may).
    relisted = api.get("/jobs").json()["jobs"]
    assert job_id in relisted and set(relisted) <= set(listing["jobs"])
    api.delete(f"/jobs/{job_id}")
