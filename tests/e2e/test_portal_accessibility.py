"""axe-core on the real portal on the minicluster: every page alice and the demo's admin see, with
a real session queued, Ready and cancelled, has no serious or critical violation.
(tests/integration/test_portal_accessibility.py checks the same pages over fakes, in more states.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import check_accessible as axe
from tests.browser import chromium, describe
from tests.e2e.conftest import BwvisuSystem, Minicluster, Portal, portal_process

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def portal(bwvisu_system: BwvisuSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with portal_process(bwvisu_system.config_path, tmp_path_factory.mktemp("portal"), login_delay=0.5,
                        session_secret_file="") as running:
        yield running


@pytest.fixture(scope="module")
def browser(portal: Portal) -> Iterator[Any]:
    with chromium() as b:
        yield b


def log_in(browser: Any, portal: Portal, user: str, password: str) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{portal.url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_every_page_of_the_real_portal_passes_axe(
        browser: Any, portal: Portal, minicluster: Minicluster) -> None:
    found: dict[str, list[dict[str, Any]]] = {}

    def check(page: Any, what: str) -> None:
        found[what] = axe(page, what)

    alice_pw = minicluster.passwords["alice"]
    page = log_in(browser, portal, "alice", alice_pw + "-wrong")
    page.get_by_test_id("login-error").wait_for()
    check(page, "failed login")
    page = log_in(browser, portal, "alice", alice_pw)
    page.wait_for_url(re.compile(r".*/apps$"))
    check(page, "apps")
    names = [t.removeprefix("launch-") for t in
             page.locator("[data-testid^=launch-]").evaluate_all("els => els.map(e => e.dataset.testid)")]
    assert "xpra-desktop" in names, names
    for name in names:
        page.goto(f"{portal.url}/apps/{name}")
        check(page, f"launch form {name}")
    page.goto(f"{portal.url}/apps/xpra-desktop")
    page.fill("input[name=runtime]", "1")
    page.click("[data-testid=start]")
    page.get_by_test_id("error-runtime").wait_for()
    check(page, "launch form with an error")
    page.fill("input[name=runtime]", "10")
    page.click("[data-testid=start]")
    page.wait_for_url(re.compile(r".*/sessions#s-[0-9a-f]+$"), timeout=90_000)
    job_id = page.url.rsplit("#s-", 1)[1]
    card = page.locator(f"#s-{job_id}")
    check(page, f"sessions, {card.get_by_test_id('state').inner_text()}")
    card.get_by_test_id("state").filter(has_text="Ready").wait_for(timeout=120_000)
    assert "Ready" in page.get_by_test_id("announce").inner_text(), "the change was announced"
    check(page, "sessions, ready")
    page.goto(f"{portal.url}/sessions/{job_id}")
    check(page, "session page")
    page.goto(f"{portal.url}/sessions/0123456789abcdef")
    check(page, "error page")
    page.goto(f"{portal.url}/sessions")
    card.get_by_test_id("cancel").click()
    card.get_by_test_id("state").filter(has_text="Cancelled").wait_for(timeout=60_000)
    check(page, "sessions, cancelled")

    admin = log_in(browser, portal, "admin", minicluster.passwords["admin"])
    admin.goto(f"{portal.url}/admin")
    check(admin, "admin")
    admin.goto(f"{portal.url}/admin/jobs/{job_id}")
    admin.get_by_test_id("job-events").wait_for()
    check(admin, "job history")
    bad = {what: describe(v) for what, v in found.items() if v}
    assert not bad, f"axe-core found serious or critical violations: {bad}"
