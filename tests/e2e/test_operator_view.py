"""The operator's view on the minicluster: `bwvisu jobs`, `bwvisu job <id>` and the portal's admin
pages show a real job's history (Slurm id, node, gateway, forwards, how it ended); the demo's admin
account sees them, alice does not."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args
from tests.e2e.conftest import BwvisuSystem, Minicluster, Portal, portal_process
from tests.e2e.test_portal import http_login

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def portal(bwvisu_system: BwvisuSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with portal_process(bwvisu_system.config_path, tmp_path_factory.mktemp("portal"), login_delay=0.5,
                        session_secret_file="") as running:
        yield running


def wait_state(api: httpx.Client, job_id: str, state: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (job := api.get(f"/jobs/{job_id}").json())["state"] != state:
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job}"
        time.sleep(0.3)
    return job


@pytest.fixture(scope="module")
def ended_job(bwvisu_system: BwvisuSystem) -> str:
    """A port-echo job of alice's that became available through a gateway and was cancelled."""
    with httpx.Client(**runner_api_client_args(bwvisu_system.settings), timeout=90) as api:
        r = api.post("/jobs", json={"uid": "alice", "template-name": "port-echo",
                                    "variables": {"seconds": "300", "runtime": "10"}})
        assert r.status_code == 200, r.text
        job_id = str(r.json()["job-id"])
        wait_state(api, job_id, "available")
        assert api.delete(f"/jobs/{job_id}").status_code == 200
        wait_state(api, job_id, "finished")
        return job_id


def test_bwvisu_job_prints_the_real_history(bwvisu_system: BwvisuSystem, ended_job: str) -> None:
    out = bwvisu_system.cli("job", ended_job)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"slurm id:  \d+ \(via login\d\)", text), text
    assert re.search(r"node:      cn\d", text) and re.search(r"gateway:   gw\d", text), text
    assert "finished:  ended: CANCELLED" in text and "after a cancel request" in text, text
    kinds = [line.split()[4] for line in text.splitlines() if line.startswith("  20")]
    for step in ("JobSubmitted", "JobQueued", "JobStarted", "PortsRequested", "PortsAssigned",
                 "PortsForwarded", "PortOpen", "JobCancelRequested", "JobEnded"):
        assert step in kinds, (step, kinds)
    assert kinds.index("JobSubmitted") < kinds.index("JobQueued") < kinds.index("JobStarted")
    assert bwvisu_system.settings.runner_api.user not in text
    secret_file = bwvisu_system.state_dir / "secrets" / "bwvisu-web.password"
    if secret_file.exists():
        assert secret_file.read_text().strip() not in text
    unknown = bwvisu_system.cli("job", "0000000000000000")
    assert unknown.returncode == 1 and "no job '0000000000000000'" in unknown.stderr


def test_bwvisu_jobs_lists_it_by_user_and_state(bwvisu_system: BwvisuSystem, ended_job: str) -> None:
    out = bwvisu_system.cli("jobs", "--user", "alice", "--state", "finished", "--limit", "500")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith(ended_job))
    assert row.split()[1:4] == ["alice", "port-echo", "finished"]
    none = bwvisu_system.cli("jobs", "--user", "bob", "--state", "available")
    assert ended_job not in none.stdout


def test_the_demos_admin_sees_the_history_and_alice_does_not(
        portal: Portal, minicluster: Minicluster, ended_job: str) -> None:
    passwords = minicluster.passwords
    assert "admin" in passwords, "the minicluster keeps the admin's password beside alice's"
    with http_login(portal, "admin", passwords["admin"]) as admin:
        page = admin.get("/admin", params={"user": "alice", "state": "finished"})
        assert page.status_code == 200 and f'href="/admin/jobs/{ended_job}"' in page.text, portal.log()
        history = admin.get(f"/admin/jobs/{ended_job}")
        assert history.status_code == 200
        for step in ("JobSubmitted", "PortsForwarded", "JobEnded"):
            assert f"<td>{step}</td>" in history.text
    with http_login(portal, "alice", passwords["alice"]) as alice:
        assert alice.get("/admin").status_code == 403
        assert alice.get(f"/admin/jobs/{ended_job}").status_code == 403
