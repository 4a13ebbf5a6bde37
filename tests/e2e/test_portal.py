"""The web portal in a real browser (Debian's chromium via Playwright) on the minicluster.

Alice logs in with her real password (PAM), starts the Xpra desktop, watches its card turn
Ready without reloading, connects, sees the xterm in Xpra's HTML5 client, and cancels; bob
sees none of it. The portal runs as its own process next to `bwvisu up` (bwvisu_system),
on a free port, with the system's config.
"""

from __future__ import annotations

import contextlib
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import chromium
from tests.e2e.conftest import REPO, BwvisuSystem, Minicluster, Portal, portal_process

ARTIFACTS = REPO / "test-artifacts"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def portal(bwvisu_system: BwvisuSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with portal_process(bwvisu_system.config_path, tmp_path_factory.mktemp("portal"), login_delay=0.5,
                        session_secret_file="") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


@contextlib.contextmanager
def http_login(portal: Portal, user: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=portal.url, timeout=30) as client:
        page = client.get("/login")
        r = client.post("/login", data={"csrf": csrf_of(page.text), "username": user,
                                        "password": password, "next": "/apps"})
        assert r.status_code == 303, r.text
        yield client


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def browser_login(browser, portal: Portal, user: str, password: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{portal.url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    return context, page


def nat_rules(minicluster: Minicluster, job_id: str) -> list[str]:
    rules = []
    for gw in minicluster.gateway_nodes:
        out = minicluster.in_host(gw, ["iptables-save", "-t", "nat"]).stdout
        rules += [line for line in out.splitlines() if job_id in line]
    return rules


def test_a_wrong_password_is_refused(browser, portal: Portal, minicluster: Minicluster) -> None:
    context, page = browser_login(browser, portal, "alice", minicluster.passwords["alice"] + "-wrong")
    try:
        assert page.get_by_test_id("login-error").inner_text() == "Wrong user name or password."
        assert page.url.startswith(f"{portal.url}/login")
        page.goto(f"{portal.url}/sessions")
        assert "/login" in page.url, "not logged in"
    finally:
        context.close()


def test_a_form_post_without_its_csrf_token_is_refused(portal: Portal, minicluster: Minicluster) -> None:
    with http_login(portal, "alice", minicluster.passwords["alice"]) as alice:
        r = alice.post("/apps/xpra-desktop", data={"runtime": "10", "nodes": "1"})
        assert r.status_code == 403
        r = alice.post("/apps/xpra-desktop", data={"runtime": "10", "nodes": "1", "csrf": "forged"})
        assert r.status_code == 403 and "out of date" in r.text
        assert alice.get("/admin").status_code == 403, "alice is not in the admin group"
    with httpx.Client(base_url=portal.url) as stranger:
        r = stranger.post("/login", data={"username": "alice", "password": minicluster.passwords["alice"]})
        assert r.status_code == 403


def test_alice_starts_a_desktop_connects_and_cancels_and_bob_sees_nothing(
        browser, portal: Portal, minicluster: Minicluster) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context, page = browser_login(browser, portal, "alice", minicluster.passwords["alice"])
    try:
        page.click("[data-testid=launch-xpra-desktop]")
        page.fill("input[name=runtime]", "10")
        page.click("[data-testid=start]")
        page.wait_for_url(re.compile(r".*/sessions#s-[0-9a-f]+$"), timeout=90_000)
        job_id = page.url.rsplit("#s-", 1)[1]
        card = page.locator(f"#s-{job_id}")
        assert card.count() == 1, f"no card for {job_id}"
        # Mark this document: if the page reloaded, the mark would be gone.
        page.evaluate("window.__bwvisuNoReload = true")
        seen: list[str] = []
        assert wait_for_state(card, "Ready", 120, seen) == "Ready", f"states: {seen}\n{portal.log()}"
        assert page.evaluate("window.__bwvisuNoReload === true"), "the page reloaded"
        page.screenshot(path=str(ARTIFACTS / "portal-sessions.png"), full_page=True)
        check_bob_sees_nothing(portal, minicluster, job_id)

        # One click: the portal's Connect opens the desktop already authenticated, in a new tab.
        with context.expect_page() as opened:
            card.get_by_test_id("connect").click()
        xpra = opened.value
        xpra.wait_for_load_state()
        xpra.wait_for_selector("#screen div.window", timeout=60_000)
        deadline = time.monotonic() + 30
        while True:  # until the desktop's terminal window has its title
            titles = xpra.locator("#screen div.window .windowtitle").all_inner_texts()
            if any("xterm" in t.lower() or "@" in t for t in titles):
                break
            assert time.monotonic() < deadline, titles
            xpra.wait_for_timeout(200)
        xpra.screenshot(path=str(ARTIFACTS / "portal-xpra-desktop.png"))
        url = xpra.url
        assert re.fullmatch(r"http://10\.200\.0\.3\d:\d+/index\.html\?autoconnect=true&password=[0-9a-f]{64}",
                            url), url
        secret = url.rsplit("password=", 1)[1]
        assert secret not in page.content(), "the sessions page never holds the secret"
        xpra.close()
        check_a_stranger_gets_no_desktop(browser, url.replace(f"&password={secret}", ""))
        job_log = minicluster.home("alice") / f"bwvisu-job-{job_id}.out"
        assert stat.S_IMODE(job_log.stat().st_mode) == 0o600, oct(job_log.stat().st_mode)
        assert secret not in job_log.read_text(errors="replace"), "Xpra logged its password"
        assert nat_rules(minicluster, job_id), "the gateway has no rule for the job"

        card.get_by_test_id("cancel").click()
        page.wait_for_url(re.compile(rf".*/sessions#s-{job_id}$"))
        card = page.locator(f"#s-{job_id}")
        card.get_by_test_id("connect").wait_for(state="detached", timeout=60_000)
        deadline = time.monotonic() + 60
        while nat_rules(minicluster, job_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert nat_rules(minicluster, job_id) == [], "the gateway rule outlived the session"
        assert wait_for_state(card, "Cancelled", 60) == "Cancelled"
        # Last, as it needs the cluster-side log reader: the tail of the job's log on its card.
        card.locator("details.log summary").click()
        log = card.get_by_test_id("log")
        log_file = minicluster.home("alice") / f"bwvisu-job-{job_id}.out"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not is_tail_of(log.inner_text(), log_file):
            page.wait_for_timeout(500)
        assert is_tail_of(log.inner_text(), log_file), log.inner_text()
    finally:
        page.screenshot(path=str(ARTIFACTS / "portal-after-cancel.png"), full_page=True)
        context.close()


def check_a_stranger_gets_no_desktop(browser, url: str) -> None:  # type: ignore[no-untyped-def]
    """Anyone else who finds the gateway's port (no portal login, no secret) gets no window."""
    stranger = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        xpra = stranger.new_page()
        xpra.goto(url)
        # Xpra's client loads (it is a static page), connects, is asked for the password it
        # does not have, and falls back to its connect form with the reason.
        xpra.get_by_text("You were disconnected").wait_for(timeout=60_000)
        xpra.screenshot(path=str(ARTIFACTS / "xpra-without-secret.png"))
        assert xpra.locator("#screen div.window").count() == 0, "a desktop without the secret"
        for wrong in ("&password=" + "0" * 64, "&password="):
            xpra.goto(url + wrong)
            xpra.get_by_text("You were disconnected").wait_for(timeout=60_000)
            assert xpra.locator("#screen div.window").count() == 0, wrong
    finally:
        stranger.close()


def is_tail_of(shown: str, log_file: Path) -> bool:
    """The card shows the end of the job's own log file (read on the cluster as alice)."""
    lines = [line for line in shown.splitlines() if line.strip()]
    return bool(lines) and log_file.exists() and all(line in log_file.read_text() for line in lines[-5:])


def wait_for_state(card, wanted: str, timeout: float, seen: list[str] | None = None) -> str:  # type: ignore[no-untyped-def]
    """The card's state words once they read `wanted` (or the last ones seen at the timeout)."""
    seen = [] if seen is None else seen
    deadline = time.monotonic() + timeout
    while True:
        words = card.get_by_test_id("state").inner_text()
        if not seen or seen[-1] != words:
            seen.append(words)
        if words == wanted or time.monotonic() > deadline:
            return words
        time.sleep(0.25)


def check_bob_sees_nothing(portal: Portal, minicluster: Minicluster, job_id: str) -> None:
    with http_login(portal, "bob", minicluster.passwords["bob"]) as bob:
        assert job_id not in bob.get("/sessions").text
        assert bob.get(f"/sessions/{job_id}").status_code == 404
        assert bob.get(f"/sessions/{job_id}/log").status_code == 404
        token = csrf_of(bob.get("/apps").text)
        assert bob.post(f"/sessions/{job_id}/cancel", data={"csrf": token}).status_code == 404
        assert bob.post(f"/sessions/{job_id}/connect", data={"csrf": token}).status_code == 404
