"""Time running out, Extend, Ready while elsewhere and Launch again, in a real browser on the minicluster.

Alice asks for notifications with "Notify me", starts a short port-echo session (3 minutes) and
switches to another tab: a notification says it is ready. With the warning set to 2.25 minutes
before the end, her card turns "Ends soon" by itself and a notification says so. Extend adds time
in Slurm (squeue shows the new limit) up to the site's maximum (`scheduler.max-extension`, 30 here)
and no further; bob can neither extend nor relaunch it. Once cancelled, "Launch again" opens the
form with the session's values and starts a new session. Browser notifications are recorded by a
stand-in for the Notification API (headless chromium shows none).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args, write_isolated_config
from tests.e2e.conftest import BwvisuSystem, Minicluster, Portal, portal_process, system_up
from tests.e2e.test_portal import ARTIFACTS, browser, http_login, wait_for_state  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(900)

MAX_EXTENSION = 30
RUNTIME = 3  # minutes
WARNING = 2.25  # minutes before the end
BUNDLE = {
    "title": "Port echo", "description": "A tiny TCP service, for tests.", "icon": "app",
    "template": "port-echo", "runtime-field": "runtime",
    "fields": [
        {"name": "runtime", "type": "integer", "label": "Run time (minutes)", "default": 5, "min": 1,
         "max": 60},
        {"name": "seconds", "type": "integer", "label": "Serves for (seconds)", "default": 60, "min": 1,
         "max": 3600},
        {"name": "delay", "type": "integer", "label": "Listens after (seconds)", "default": 0, "min": 0,
         "max": 60},
    ],
}
# A stand-in for the Notification API that records what the page shows; the permission outlives a
# page (as the browser's does), and `window.__hidden` plays a tab in the background.
NOTIFICATIONS = """
window.__notes = JSON.parse(sessionStorage.getItem("test-notes") || "[]");
class RecordedNotification {
  constructor(title, options) {
    window.__notes.push({ title: title, body: (options || {}).body || "" });
    sessionStorage.setItem("test-notes", JSON.stringify(window.__notes));
  }
  static get permission() { return localStorage.getItem("test-permission") || "default"; }
  static requestPermission() {
    window.__asked = (window.__asked || 0) + 1;
    localStorage.setItem("test-permission", "granted");
    return Promise.resolve("granted");
  }
  close() {}
}
window.Notification = RecordedNotification;
Object.defineProperty(document, "visibilityState",
  { configurable: true, get() { return window.__hidden ? "hidden" : "visible"; } });
"""


@pytest.fixture(scope="module")
def system(minicluster: Minicluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BwvisuSystem]:
    """bwvisu with Extend allowed up to MAX_EXTENSION minutes per session."""
    path = write_isolated_config(minicluster.config_path, tmp_path_factory.mktemp("time-system"))
    config = json.loads(path.read_text())
    config["scheduler"] = {**config.get("scheduler", {}), "max-extension": MAX_EXTENSION}
    path.write_text(json.dumps(config, indent=2))
    with system_up(path) as running:
        yield running


@pytest.fixture(scope="module")
def portal(system: BwvisuSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    base = tmp_path_factory.mktemp("time-portal")
    bundles = base / "bundles"
    bundles.mkdir()
    (bundles / "port-echo.app.json").write_text(json.dumps(BUNDLE))
    with portal_process(system.config_path, base, login_delay=0.5, session_secret_file="",
                        ending_warning=WARNING, bundles_dir=str(bundles)) as running:
        yield running


def slurm_time_limit(system: BwvisuSystem, minicluster: Minicluster, job_id: str) -> str:
    """The job's time limit as Slurm has it (squeue, asked on a login node)."""
    name = f"{system.settings.scheduler.job_tag}-{job_id}"
    out = minicluster.ssh("login0", ["squeue", "--noheader", f"--name={name}", "--Format=TimeLimit"])
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def wait_until(check, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.5)


def notes(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [n["title"] for n in page.evaluate("window.__notes")]


def test_ending_soon_extend_ready_elsewhere_and_launch_again(  # noqa: PLR0915 (one session's story)
        browser, portal: Portal, system: BwvisuSystem, minicluster: Minicluster) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(NOTIFICATIONS)
    page = context.new_page()
    job_ids: list[str] = []
    try:
        page.goto(f"{portal.url}/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", minicluster.passwords["alice"])
        page.click("button[type=submit]")
        page.goto(f"{portal.url}/sessions")
        # Asked only on her click, and never again once answered.
        assert page.evaluate("window.__asked") is None, "the page asked for permission by itself"
        page.get_by_test_id("notify-me").click()
        page.get_by_test_id("notify-state").wait_for(state="visible")
        assert page.get_by_test_id("notify-state").inner_text() == "Notifications are on."
        assert page.get_by_test_id("notify-me").is_hidden()

        page.goto(f"{portal.url}/apps/port-echo")
        page.fill("input[name=runtime]", str(RUNTIME))
        page.fill("input[name=seconds]", "900")
        page.fill("input[name=delay]", "8")
        page.click("[data-testid=start]")
        page.wait_for_url(re.compile(r".*/sessions#s-[0-9a-f]+$"), timeout=90_000)
        page.evaluate("window.__hidden = true")  # she looks at another tab meanwhile
        job_id = page.url.rsplit("#s-", 1)[1]
        job_ids.append(job_id)
        card = page.locator(f"#s-{job_id}")
        assert wait_for_state(card, "Ready", 120) == "Ready", portal.log()
        wait_until(lambda: "Port echo is ready" in notes(page), "a notification that it is ready", 10)
        page.evaluate("window.__hidden = false")
        check_time_running_out(page, card)
        check_extend(page, card, system, minicluster, job_id)

        card.get_by_test_id("cancel").click()
        page.wait_for_url(re.compile(rf".*/sessions#s-{job_id}$"))
        card = page.locator(f"#s-{job_id}")
        assert wait_for_state(card, "Cancelled", 60) == "Cancelled"
        with http_login(portal, "bob", minicluster.passwords["bob"]) as bob:
            assert bob.get(f"/apps/port-echo?from={job_id}").status_code == 404, "bob relaunches nothing"
        card.get_by_test_id("launch-again").click()
        page.wait_for_url(f"{portal.url}/apps/port-echo?from={job_id}")
        assert [page.input_value(f"input[name={n}]") for n in ("runtime", "seconds", "delay")] == [
            str(RUNTIME), "900", "8"]
        page.click("[data-testid=start]")
        page.wait_for_url(re.compile(r".*/sessions#s-[0-9a-f]+$"), timeout=90_000)
        again = page.url.rsplit("#s-", 1)[1]
        job_ids.append(again)
        assert again != job_id
        assert wait_for_state(page.locator(f"#s-{again}"), "Ready", 120) == "Ready", portal.log()
        assert notes(page).count("Port echo is ready") == 1, "no notification while she looks"
        page.screenshot(path=str(ARTIFACTS / "portal-launch-again.png"), full_page=True)
    finally:
        cancel_all(system, job_ids)
        context.close()


def check_time_running_out(page, card) -> None:  # type: ignore[no-untyped-def]
    """Not yet, then by itself: the highlight and the words, and one notification."""
    ends = card.get_by_test_id("time-left").get_attribute("data-ends")
    left = page.evaluate("(ends) => (Date.parse(ends) - Date.now()) / 1000", ends)
    assert left > WARNING * 60, f"Ready only {left:.0f} s before the end: too slow to see the warning come"
    assert "ending-soon" not in (card.get_attribute("class") or "")
    assert card.get_by_test_id("ending-soon").is_hidden()
    card.get_by_test_id("ending-soon").wait_for(state="visible", timeout=int(left - WARNING * 60 + 30) * 1000)
    assert "ending-soon" in (card.get_attribute("class") or "")
    words = card.get_by_test_id("ending-soon").inner_text()
    assert words == "Ends soon: save your work or extend the session."
    wait_until(lambda: "Port echo ends soon" in notes(page), "a notification that it ends soon", 10)
    page.screenshot(path=str(ARTIFACTS / "portal-ending-soon.png"), full_page=True)


def check_extend(page, card, system: BwvisuSystem, minicluster: Minicluster,  # type: ignore[no-untyped-def]
                 job_id: str) -> None:
    """Extend adds time in Slurm up to the site's maximum; beyond it, and for bob, nothing."""
    assert slurm_time_limit(system, minicluster, job_id) == f"{RUNTIME}:00"
    assert card.get_by_test_id("extend-minutes").locator("option").all_inner_texts() == ["15 min", "30 min"]
    card.get_by_test_id("extend-minutes").select_option("15")
    card.get_by_test_id("extend").click()
    page.wait_for_url(re.compile(rf".*/sessions#s-{job_id}$"))
    assert slurm_time_limit(system, minicluster, job_id) == f"{RUNTIME + 15}:00"
    card = page.locator(f"#s-{job_id}")
    # The portal's read model may take a moment longer than runner-api's: the live card follows.
    card.get_by_test_id("ending-soon").wait_for(state="hidden", timeout=10_000)
    assert "ending-soon" not in (card.get_attribute("class") or ""), "the new end is far"
    wait_until(lambda: re.fullmatch(r"1[4-8] min left", card.get_by_test_id("time-left").inner_text()),
               "the card counts down from the new end", 10)
    assert card.get_by_test_id("extend-minutes").locator("option").all_inner_texts() == ["15 min"]
    card.get_by_test_id("extend").click()
    page.wait_for_url(re.compile(rf".*/sessions#s-{job_id}$"))
    assert slurm_time_limit(system, minicluster, job_id) == f"{RUNTIME + 30}:00"
    page.locator(f"#s-{job_id}").get_by_test_id("extend").wait_for(state="detached", timeout=10_000)
    with httpx.Client(**runner_api_client_args(system.settings), timeout=60) as api:
        r = api.post(f"/jobs/{job_id}/extend", json={"uid": "alice", "minutes": 1})
        assert r.status_code == 400 and "extended by the most this site allows (30 minutes)" in r.text, r.text
        r = api.post(f"/jobs/{job_id}/extend", json={"uid": "bob", "minutes": 1})
        assert r.status_code == 404, r.text
    assert slurm_time_limit(system, minicluster, job_id) == f"{RUNTIME + 30}:00", "refused means unchanged"


def cancel_all(system: BwvisuSystem, job_ids: list[str]) -> None:
    with httpx.Client(**runner_api_client_args(system.settings), timeout=60) as api:
        for job_id in job_ids:
            api.delete(f"/jobs/{job_id}")

