"""Who may be a job's user, and Slurm jobs named to fool the watcher, on the minicluster's real Slurm."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args
from bwvisu_common import events as ev
from tests.e2e.conftest import BwvisuSystem, Minicluster

pytestmark = pytest.mark.timeout(600)

SLEEP_SCRIPT = "#!/bin/bash\nsleep 300\n"


@pytest.fixture(scope="module")
def api(bwvisu_system: BwvisuSystem) -> Iterator[httpx.Client]:
    with httpx.Client(**runner_api_client_args(bwvisu_system.settings), timeout=90) as client:
        yield client


def wait_for(what: str, check: Callable[[], object], timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return result


@pytest.mark.parametrize("uid", ["bwvisu", "munge", "nobody", "daemon", "slurm"])
def test_system_and_middleware_accounts_are_refused(api: httpx.Client, uid: str) -> None:
    r = api.get(f"/cluster/check-user/{uid}")
    assert r.status_code == 404, r.text
    reason = r.json()["response"]
    assert "below the site's minimum" in reason or "above the site's maximum" in reason \
        or "middleware's own account" in reason, reason
    before = set(api.get("/jobs").json()["jobs"])
    r = api.post("/jobs", json={"uid": uid, "template-name": "sleep", "variables": {"seconds": "5"}})
    assert r.status_code == 404, r.text
    assert set(api.get("/jobs").json()["jobs"]) == before  # nothing was submitted for it
    assert api.get("/cluster/check-user/alice").json() == {"response": "success"}


def alice_sbatch(minicluster: Minicluster, name: str) -> str:
    proc = minicluster.ssh("login0", ["sudo", "-n", "-u", "alice", "sbatch", "--parsable",
                                      f"--job-name={name}", "--time=10"], input=SLEEP_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def slurm_state(minicluster: Minicluster, slurm_id: str) -> str:
    proc = minicluster.ssh("login1", ["squeue", "--noheader", "--all", "--states=all",
                                      f"--jobs={slurm_id}", "--Format=State"])
    return proc.stdout.strip()


def test_alices_forged_and_look_alike_jobs_change_nothing_of_bobs(
    api: httpx.Client, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    tag = bwvisu_system.settings.scheduler.job_tag
    r = api.post("/jobs", json={"uid": "bob", "template-name": "sleep",
                                "variables": {"seconds": "300", "runtime": "10"}})
    assert r.status_code == 200, r.text
    bobs = r.json()["job-id"]
    wait_for("bob's job to run", lambda: api.get(f"/jobs/{bobs}").json()["state"] == "running")
    bobs_slurm_id = _slurm_id(bwvisu_system, bobs)
    forged = f"x\n{bobs_slurm_id}|COMPLETED|None|cn0|bob|0|{tag}-{bobs}"
    alices = [alice_sbatch(minicluster, forged), alice_sbatch(minicluster, f"{tag}-{bobs}")]
    try:
        for slurm_id in alices:
            wait_for(f"alice's job {slurm_id} to run",
                     lambda s=slurm_id: slurm_state(minicluster, s) == "RUNNING")
        log = lambda: bwvisu_system.service_log("scheduler-adapter")  # noqa: E731
        wait_for("the watcher to see the forged line", lambda: "printed more than once" in log())
        # A later job of bob's starts: the watcher went on polling well past the forged lines.
        r = api.post("/jobs", json={"uid": "bob", "template-name": "sleep", "variables": {"seconds": "300"}})
        later = r.json()["job-id"]
        wait_for("bob's later job to run", lambda: api.get(f"/jobs/{later}").json()["state"] == "running")
        job = api.get(f"/jobs/{bobs}").json()
        assert job["state"] == "running", job
        assert bobs in api.get("/jobs", params={"uid": "bob"}).json()["jobs"]
        assert forged not in log() and "COMPLETED|None|cn0|bob" not in log()
        # bob's job ends for real: alice's look-alike is not taken for a stray of it and cancelled.
        for job_id in (bobs, later):
            assert api.delete(f"/jobs/{job_id}").status_code == 200
            wait_for("bob's job to finish",
                     lambda j=job_id: api.get(f"/jobs/{j}").json()["state"] == "finished")
        assert _ended_as(bwvisu_system, bobs) == "CANCELLED"  # Slurm's word, not the forged COMPLETED
        r = api.post("/jobs", json={"uid": "bob", "template-name": "sleep", "variables": {"seconds": "1"}})
        probe = r.json()["job-id"]
        wait_for("another poll cycle", lambda: api.get(f"/jobs/{probe}").json()["state"] == "finished")
        assert [slurm_state(minicluster, s) for s in alices] == ["RUNNING", "RUNNING"]
    finally:
        for slurm_id in alices:
            minicluster.ssh("login0", ["sudo", "-n", "-u", "alice", "scancel", slurm_id])


def _events(system: BwvisuSystem, job_id: str) -> list[ev.AnyEvent]:
    async def read() -> list[ev.AnyEvent]:
        async with system.events() as events:
            return [e for _, e in await events.read_job(job_id)]

    return asyncio.run(read())


def _slurm_id(system: BwvisuSystem, job_id: str) -> str:
    return next(e.slurm_id for e in _events(system, job_id) if isinstance(e, ev.JobQueued))


def _ended_as(system: BwvisuSystem, job_id: str) -> str:
    return next(e.slurm_state for e in _events(system, job_id) if isinstance(e, ev.JobEnded))
