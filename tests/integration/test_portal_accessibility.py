"""Every page of the portal passes axe-core with no serious or critical violation: in a real
browser (Debian's chromium), over a portal with fakes, in each state a page can be in."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bwvisu_common import events as ev
from tests.browser import ADMIN, PortalServer, check_accessible
from tests.fakes.authenticator import USERS

pytestmark = pytest.mark.integration


def log_in(browser: Any, server: PortalServer, user: str, password: str | None = None) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", USERS[user] if password is None else password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


class Findings:
    """The serious and critical violations of every page visited, reported together at the end."""

    def __init__(self) -> None:
        self.pages: dict[str, list[dict[str, Any]]] = {}

    def check(self, page: Any, what: str) -> None:
        self.pages[what] = check_accessible(page, what)

    def assert_none(self) -> None:
        bad = {what: [f"{v['id']} ({v['impact']}) on {[n['target'] for n in v['nodes']]}" for v in found]
               for what, found in self.pages.items() if found}
        assert not bad, f"axe-core found serious or critical violations: {bad}"


def test_axe_finds_what_it_is_there_to_find(browser: Any, server: PortalServer) -> None:
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/login")
    page.evaluate("""() => {
        document.querySelector("label").replaceWith(document.querySelector("input[name=username]"));
        document.body.style.color = "#ddd";
        document.querySelector("button[type=submit]").outerHTML = '<span role="button">Log in</span>'; }""")
    found = {v["id"] for v in check_accessible(page, "login, spoilt on purpose")}
    assert {"label", "color-contrast", "native-controls"} <= found, found


def test_the_pages_anyone_reaches_pass_axe(browser: Any, server: PortalServer) -> None:
    findings = Findings()
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/login")
    findings.check(page, "login")
    failed = log_in(browser, server, "alice", "wrong")
    assert failed.get_by_test_id("login-error").is_visible()
    findings.check(failed, "failed login")
    page.goto(f"{server.url}/no-such-page")
    assert page.locator("h1").inner_text() == "Not found"
    findings.check(page, "error page (anonymous)")
    assert sorted(findings.pages) == ["error page (anonymous)", "failed login", "login"]
    findings.assert_none()


def test_the_apps_and_every_launch_form_pass_axe(browser: Any, server: PortalServer) -> None:
    findings = Findings()
    page = log_in(browser, server, "alice")
    assert page.url.endswith("/apps")
    findings.check(page, "apps")
    for name in sorted(server.portal.bundles):
        page.goto(f"{server.url}/apps/{name}")
        findings.check(page, f"launch form {name}")
    page.goto(f"{server.url}/apps/xpra-desktop")
    page.fill("input[name=runtime]", "1")
    page.click("[data-testid=start]")
    assert page.get_by_test_id("error-runtime").is_visible()
    findings.check(page, "launch form with an error")
    page.goto(f"{server.url}/sessions/0123456789abcdef")
    assert page.locator("h1").inner_text() == "Not found"
    findings.check(page, "error page (logged in)")
    assert len(findings.pages) == len(server.portal.bundles) + 3
    findings.assert_none()


def test_the_sessions_pages_pass_axe_in_every_state_of_a_card(browser: Any, server: PortalServer) -> None:
    findings = Findings()
    page = log_in(browser, server, "bob")
    page.goto(f"{server.url}/sessions")
    findings.check(page, "sessions, none")
    job_id = server.call(lambda: server.runner.submit("bob", "xpra-desktop", {"runtime": "30", "nodes": "1"}))
    # Long enough to scroll: a scrolled log must be reachable from the keyboard.
    server.runner.logs[job_id] = "".join(f"xpra: line {n}\n" for n in range(30)) + "xpra: ready on port 20001"
    card = page.locator(f"#s-{job_id}")
    card.get_by_test_id("state").filter(has_text="Waiting in the queue").wait_for()
    findings.check(page, "sessions, queued")
    card.locator("summary").click()
    card.get_by_test_id("log").filter(has_text="xpra: ready").wait_for()
    findings.check(page, "sessions, queued, log open")
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    server.call(lambda: server.store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                                             ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=fwd),
                                             ev.PortOpen(job_id=job_id, external_port=21001)]))
    card.get_by_test_id("state").filter(has_text="Ready").wait_for()
    findings.check(page, "sessions, ready")
    page.goto(f"{server.url}/sessions/{job_id}")
    assert "xpra: ready" in page.get_by_test_id("log-full").inner_text()
    findings.check(page, "session page")
    page.goto(f"{server.url}/sessions")
    card.get_by_test_id("cancel").click()
    page.wait_for_url(re.compile(r".*/sessions"))
    server.call(lambda: server.store.append([ev.JobEnded(job_id=job_id, slurm_state="CANCELLED",
                                                         exit_code=0)]))
    card.get_by_test_id("state").filter(has_text="Cancelled").wait_for()
    findings.check(page, "sessions, cancelled")
    failed = server.call(lambda: server.runner.submit("bob", "web-app", {"runtime": "30"}))
    server.call(lambda: server.store.append([ev.JobStarted(job_id=failed, nodes=["cn1"]),
                                             ev.JobEnded(job_id=failed, slurm_state="FAILED", exit_code=3)]))
    page.locator(f"#s-{failed}").get_by_test_id("state").filter(has_text="Ended with an error").wait_for()
    assert "Ended with an error" in page.get_by_test_id("announce-alert").inner_text()
    findings.check(page, "sessions, failed")

    admin = log_in(browser, server, ADMIN)
    admin.goto(f"{server.url}/admin")
    findings.check(admin, "admin")
    admin.get_by_test_id("history-link").first.click()
    admin.get_by_test_id("job-events").wait_for()
    findings.check(admin, "job history")
    page.goto(f"{server.url}/admin")
    assert page.locator("h1").inner_text() == "Not allowed"
    findings.check(page, "error page (not allowed)")
    assert len(findings.pages) == 10
    findings.assert_none()
