"""A login node that stops answering (its link down, not a refused connection): the next POST /jobs
costs seconds, goes through the other login node, and makes exactly one Slurm job."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args
from bwvisu_common import events as ev
from tests.e2e.conftest import BwvisuSystem, Minicluster
from tests.e2e.test_scheduler_lifecycle import slurm_jobs_named, wait_until

pytestmark = pytest.mark.timeout(600)

# What a dead command node may cost a user: the answer timeout and a little.
FAST = 8.0


@pytest.fixture
def api(bwvisu_system: BwvisuSystem) -> Iterator[httpx.Client]:
    with httpx.Client(**runner_api_client_args(bwvisu_system.settings), timeout=90) as client:
        yield client


def post_job(api: httpx.Client, seconds: str) -> tuple[str, float]:
    """POST /jobs; the job's id and how long the answer took."""
    t0 = time.monotonic()
    r = api.post("/jobs", json={"uid": "alice", "template-name": "sleep",
                                "variables": {"seconds": seconds, "runtime": "5"}})
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    return r.json()["job-id"], took


async def command_node(system: BwvisuSystem, job_id: str) -> str:
    log, _ = await wait_until(system, job_id, lambda v: bool(v.slurm_id), timeout=30)
    return next(e.command_node for e in log if isinstance(e, ev.JobQueued))


async def test_a_login_node_whose_link_is_down_costs_seconds_and_never_a_second_job(
    api: httpx.Client, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    # Open connections to login0 first: the case where the runner trusts a connection to a dead node.
    warm, _ = post_job(api, "1")
    assert await command_node(bwvisu_system, warm) == "login0"
    with minicluster.link_down("login0"):
        job_id, took = post_job(api, "300")
        assert took < FAST, f"POST /jobs took {took:.1f} s with login0's link down"
        assert await command_node(bwvisu_system, job_id) == "login1"
        assert len(slurm_jobs_named(bwvisu_system, minicluster, job_id)) == 1
        print(f"POST /jobs with login0's link down: {took:.2f} s")
    # Back: whatever login0 still held reaches Slurm now, and must not be a second job.
    deadline = time.monotonic() + 60
    while True:
        later, took = post_job(api, "1")
        assert took < FAST, f"POST /jobs took {took:.1f} s after login0 came back"
        if await command_node(bwvisu_system, later) == "login0":
            break  # login0 serves again
        assert time.monotonic() < deadline, "login0 was never used again after its link came back"
    assert len(slurm_jobs_named(bwvisu_system, minicluster, job_id)) == 1
    assert api.delete(f"/jobs/{job_id}").json() == {"response": "job cancelled"}
    await wait_until(bwvisu_system, later, lambda v: v.state == "finished", timeout=90)
