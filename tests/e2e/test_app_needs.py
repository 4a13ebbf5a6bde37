"""Only what can run is offered, on the minicluster with the real check (sinfo and `command -v` on a
login node through scheduler-adapter): its nodes have no Singularity, so the demo's "Visualization
container" shows greyed out with the reason in a real browser and a launch of it is refused by the
portal's server; the Xpra desktop, whose programs the nodes have, is offered as before."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args
from tests.e2e.conftest import BwvisuSystem, Minicluster, Portal
from tests.e2e.test_portal import ARTIFACTS, browser, browser_login, csrf_of, http_login, portal  # noqa: F401

REASON = "needs singularity, which this cluster lacks"
# scheduler-adapter looks at the cluster right after its start; the portal keeps an answer 30 s
# and "could not check" 5 s.
SETTLE = 60


@pytest.fixture(scope="module")
def api(bwvisu_system: BwvisuSystem) -> Iterator[httpx.Client]:
    with httpx.Client(**runner_api_client_args(bwvisu_system.settings), timeout=60) as client:
        yield client


def test_runner_api_tells_what_the_cluster_has_of_what_the_apps_need(api: httpx.Client) -> None:
    deadline = time.monotonic() + SETTLE
    while True:
        r = api.get("/apps/requirements")
        assert r.status_code == 200, r.text
        facts = r.json()
        if facts["commands"] is not None and facts["partitions"] is not None:
            break
        assert time.monotonic() < deadline, facts
        time.sleep(1)
    assert facts["partitions"] == {"debug": []}, facts
    assert facts["commands"]["singularity"] is False, facts
    assert all(facts["commands"][c] for c in ("xpra", "Xvfb", "xterm", "jupyter-notebook")), facts
    assert facts["commands-source"] == "login-node" and facts["commands-checked-at"] > 0


def test_the_visualization_container_is_greyed_out_with_the_reason(
        browser, portal: Portal, minicluster: Minicluster) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    context, page = browser_login(browser, portal, "alice", minicluster.passwords["alice"])
    try:
        page.wait_for_url(re.compile(r".*/apps$"))
        why = page.get_by_test_id("needs-xpra-singularity")
        deadline = time.monotonic() + SETTLE
        while REASON not in (why.inner_text() if why.count() else ""):
            assert time.monotonic() < deadline, f"no reason shown:\n{page.content()}\n{portal.log()}"
            page.wait_for_timeout(1000)
            page.reload()
        app = page.get_by_test_id("app-xpra-singularity")
        assert "unavailable" in (app.get_attribute("class") or "")
        assert app.get_by_role("button", name="Start…").is_disabled()
        assert why.inner_text() == f"Not available here: it {REASON}."
        assert page.get_by_test_id("launch-xpra-singularity").count() == 0, "it offers no Start"
        assert page.get_by_test_id("launch-xpra-desktop").is_visible(), "the desktop stays offered"
        assert page.get_by_test_id("needs-xpra-desktop").count() == 0
        page.screenshot(path=str(ARTIFACTS / "apps-needs.png"), full_page=True)

        page.goto(f"{portal.url}/apps/xpra-singularity")  # the form, reached by its address
        assert REASON in page.get_by_test_id("launch-error").inner_text()
        assert page.get_by_test_id("start").is_disabled()
    finally:
        context.close()


def test_a_launch_of_it_is_refused_with_the_reason(
        portal: Portal, minicluster: Minicluster, api: httpx.Client) -> None:  # noqa: F811
    before = set(api.get("/jobs", params={"uid": "alice"}).json()["jobs"])
    with http_login(portal, "alice", minicluster.passwords["alice"]) as alice:
        deadline = time.monotonic() + SETTLE
        while REASON not in alice.get("/apps").text:  # never a POST before the portal knows: it would run
            assert time.monotonic() < deadline, portal.log()
            time.sleep(1)
        form = alice.get("/apps/xpra-desktop")
        r = alice.post("/apps/xpra-singularity", data={
            "csrf": csrf_of(form.text), "runtime": "10", "image_name": "paraview/5.11.sif", "nodes": "1"})
    assert r.status_code == 409, (r.status_code, r.text[-2000:])
    assert REASON in r.text
    assert set(api.get("/jobs", params={"uid": "alice"}).json()["jobs"]) == before, "a job was submitted"
