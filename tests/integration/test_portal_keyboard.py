"""The portal from the keyboard alone, and what a screen reader is told when a card changes: in a
real browser (Debian's chromium) over a portal with fakes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from tests.browser import PortalServer

pytestmark = pytest.mark.integration

# What has the focus, and whether it shows: a ring (outline) of some width while focus-visible.
FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {tag: el.tagName.toLowerCase(), testid: el.dataset.testid || "", name: el.name || "",
          text: (el.textContent || "").trim().slice(0, 40), card: el.closest("article.card")?.id || "",
          ring: el.matches(":focus-visible") && style.outlineStyle !== "none"
                && parseFloat(style.outlineWidth) > 0};
}"""
# Every control a keyboard user must reach: links, buttons, fields, summaries, scrollable logs.
TABBABLE = """() => Array.from(document.querySelectorAll(
    "a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex='0']"))
  .filter((el) => el.getClientRects().length > 0 && !el.disabled).length"""


def tab_to(page: Any, wanted: dict[str, str], limit: int = 40) -> list[dict[str, Any]]:
    """Presses Tab until the focused element has every key/value of `wanted`; each element passed
    on the way shows its focus. Returns the elements passed."""
    passed = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = page.evaluate(FOCUSED)
        if now["tag"] != "body":
            assert now["ring"], f"the focus does not show on {now}"
        passed.append(now)
        if all(now.get(k) == v for k, v in wanted.items()):
            return passed
    raise AssertionError(f"{wanted} not reached with Tab; passed {passed}")


def test_log_in_launch_and_cancel_with_the_keyboard_alone(browser: Any, server: PortalServer) -> None:
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/login")
    assert page.evaluate(FOCUSED)["name"] == "username", "the page opens in its first field"
    page.keyboard.type("alice")
    tab_to(page, {"name": "password"}, limit=1)
    page.keyboard.type("alice-pw")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/apps$"))

    tab_to(page, {"testid": "launch-xpra-desktop"})
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/apps/xpra-desktop$"))
    tab_to(page, {"name": "runtime"})
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    tab_to(page, {"testid": "start"})
    page.keyboard.press("Enter")
    page.get_by_test_id("error-runtime").wait_for()
    assert page.evaluate(FOCUSED)["name"] == "runtime", "the field in error has the focus"
    assert page.locator("#f-runtime").get_attribute("aria-invalid") == "true"
    described = page.locator("#f-runtime").get_attribute("aria-describedby") or ""
    assert "e-runtime" in described.split(), "its error is read with it"
    page.keyboard.press("Control+A")
    page.keyboard.type("10")
    tab_to(page, {"testid": "start"})
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/sessions#s-[0-9a-f]+$"))
    job_id = page.url.rsplit("#s-", 1)[1]

    tab_to(page, {"testid": "cancel", "card": f"s-{job_id}"})
    page.keyboard.press("Enter")
    page.locator(f"#s-{job_id} [data-testid=state]").filter(has_text="Cancelling…").wait_for()
    job = server.portal.feed.get(job_id)
    assert job is not None and job.uid == "alice" and job.cancel_requested


def test_every_control_of_the_sessions_page_is_reached_in_turn(browser: Any, server: PortalServer) -> None:
    page = logged_in(browser, server, "bob")
    job_id = server.call(lambda: server.runner.submit("bob", "xpra-desktop", {"runtime": "30", "nodes": "1"}))
    make_ready(server, job_id)
    card = page.locator(f"#s-{job_id}")
    card.get_by_test_id("state").filter(has_text="Ready").wait_for()
    # Each card's buttons say which session they act on (screen readers list them out of context).
    connect = "Connect to Remote desktop (Xpra) (opens in a new tab)"
    assert card.get_by_role("button", name=connect, exact=True).count() == 1
    assert card.get_by_role("button", name="Cancel Remote desktop (Xpra)", exact=True).count() == 1
    passed = tab_to(page, {"tag": "summary", "card": f"s-{job_id}"})
    assert passed[0]["text"] == "Skip to the content", "the first stop skips the bar"
    page.keyboard.press("Enter")
    card.get_by_test_id("log").filter(has_text="line 39").wait_for()
    passed += tab_to(page, {"testid": "log"}, limit=1)
    count = page.evaluate(TABBABLE)
    assert len(passed) == count, f"every control once, in order, none skipped and none a trap: {passed}"
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED)["tag"] == "body" or page.evaluate(FOCUSED)["text"] == "Skip to the content"


def test_a_change_of_state_is_announced_once_and_a_failure_at_once(
        browser: Any, server: PortalServer) -> None:
    page = logged_in(browser, server, "carol")
    polite, urgent = page.get_by_test_id("announce"), page.get_by_test_id("announce-alert")
    assert polite.get_attribute("aria-live") == "polite" and urgent.get_attribute("aria-live") == "assertive"
    page.evaluate(RECORD_ANNOUNCEMENTS)
    desktop = server.call(lambda: server.runner.submit("carol", "xpra-desktop",
                                                       {"runtime": "30", "nodes": "1"}))
    said_last(page, "announce", "Remote desktop (Xpra): Waiting in the queue")  # a new card is told

    # The focus stays on Cancel across the refresh that replaces the card's buttons.
    page.locator(f"#s-{desktop} [data-testid=cancel]").focus()
    make_ready(server, desktop)
    said_last(page, "announce", "Remote desktop (Xpra): Ready")
    focused = page.evaluate(FOCUSED)
    assert (focused["testid"], focused["card"]) == ("cancel", f"s-{desktop}"), focused

    other = server.call(lambda: server.runner.submit("carol", "web-app", {"runtime": "30"}))
    said_last(page, "announce", "Every field: Waiting in the queue")
    server.call(lambda: server.store.append([ev.JobStarted(job_id=other, nodes=["cn1"]),
                                             ev.JobEnded(job_id=other, slurm_state="FAILED", exit_code=3)]))
    failure = "Every field: Ended with an error. Exit code 3; the log below may say why."
    said_last(page, "announce-alert", failure)
    assert server.portal.feed.get(other).state == JobState.FINISHED  # type: ignore[union-attr]
    said = page.evaluate("window.said")
    assert said["announce-alert"] == [failure]
    ready = said["announce"].index("Remote desktop (Xpra): Ready")
    assert not [t for t in said["announce"][ready + 1:] if "Remote desktop" in t], \
        f"the unchanged card is not told again: {said}"
    assert not [t for t in said["announce"] if "error" in t], f"a failure is told once, at once: {said}"
    assert len(polite.locator("p").all()) <= 3, "the region keeps only the last few lines"


# Every line added to the live regions, in order (the regions themselves keep only the last few).
RECORD_ANNOUNCEMENTS = """() => {
  window.said = {"announce": [], "announce-alert": []};
  for (const id of Object.keys(window.said)) {
    new MutationObserver((changes) => {
      for (const c of changes) for (const n of c.addedNodes) window.said[id].push(n.textContent.trim());
    }).observe(document.getElementById(id), {childList: true});
  }
}"""


def said_last(page: Any, region: str, text: str) -> None:
    page.wait_for_function("([region, text]) => window.said[region].at(-1) === text", arg=[region, text])


def logged_in(browser: Any, server: PortalServer, user: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", f"{user}-pw")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/apps$"))
    page.goto(f"{server.url}/sessions")
    page.wait_for_function("() => document.body.dataset.live === 'yes'")
    return page


def make_ready(server: PortalServer, job_id: str) -> None:
    server.runner.logs[job_id] = "".join(f"line {n}\n" for n in range(40))
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    server.call(lambda: server.store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                                             ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=fwd),
                                             ev.PortOpen(job_id=job_id, external_port=21001)]))
