"""The portal in a real browser without a cluster: the web app over fakes, served by uvicorn on a
free loopback port from a thread of its own, and axe-core (vendored) run on its pages.

The test drives the page from its own thread (Playwright's sync API) and changes the jobs through
`PortalServer.call`, which runs a coroutine on the server's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from bwvisu_cli.servers import free_port
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.settings import CommandNode, GatewayNode
from tests.fakes.authenticator import FakeAuthenticator
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.groups import FakeGroups
from tests.fakes.job_runner import FakeRunner
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore
from web_portal.adapters.bundle_files import load_bundles
from web_portal.app import create_app
from web_portal.domain.bundles import Bundle, parse_bundle
from web_portal.portal import Portal

REPO = Path(__file__).resolve().parent.parent
AXE = REPO / "tests" / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# What fails a page: axe's two worst grades. Moderate and minor ones are printed, not fatal.
FATAL_IMPACTS = ("serious", "critical")
ADMIN = "carol"
T = TypeVar("T")

# Every field type a bundle can have, so the launch form is checked with each of them.
EVERY_FIELD = {
    "title": "Every field", "description": "A bundle with one field of each type.", "icon": "cube",
    "template": "web-app", "connect-url": "http://{host}:{port}/",
    "fields": [
        {"name": "runtime", "type": "integer", "label": "Run time (minutes)", "default": 30, "min": 5,
         "max": 60, "help": "Minutes."},
        {"name": "partition", "type": "choice", "label": "Partition", "choices": ["debug", "gpu"],
         "default": "debug"},
        {"name": "gpu", "type": "checkbox", "label": "Use a GPU", "help": "Only on the gpu partition."},
        {"name": "folder", "type": "text", "label": "Folder", "default": ""},
    ],
}


def demo_bundles() -> dict[str, Bundle]:
    """The demo's bundles (templates/) and one with every field type."""
    bundles = load_bundles(REPO / "templates", REPO / "templates")
    extra = parse_bundle("every-field.app.json", json.dumps(EVERY_FIELD).encode())
    return {**bundles, extra.name: extra}


@dataclass
class PortalServer:
    url: str
    portal: Portal
    store: InMemoryEventStore
    runner: FakeRunner
    loop: asyncio.AbstractEventLoop

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10) -> T:
        """Runs `make()` on the server's loop (where the stores live) and returns its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(make(), self.loop)
        return future.result(timeout)


@contextlib.contextmanager
def portal_server() -> Iterator[PortalServer]:
    """A portal over in-memory stores and fakes; alice, bob and carol (admin) can log in."""
    started: Future[PortalServer] = Future()
    stop = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(_serve(started, stop)), daemon=True,
                              name="portal-server")
    thread.start()
    try:
        yield started.result(timeout=30)
    finally:
        stop.set()
        thread.join(timeout=30)


async def _serve(started: Future[PortalServer], stop: threading.Event) -> None:
    try:
        store = InMemoryEventStore()
        feed = LiveJobs(store, InMemoryStateStore())
        feed_task = asyncio.create_task(feed.run())
        runner = FakeRunner(store, feed)
        portal = Portal(
            bundles=demo_bundles(), runner=runner, feed=feed, groups=FakeGroups({"bwvisu-admin": {ADMIN}}),
            prober=FakeProber(open_ports={("10.0.0.10", 22)}), authenticator=FakeAuthenticator(),
            login_delay=0.0, history=store,
            gateways=[GatewayNode(name="gw0", internal_ip="10.0.0.30", external_ip="192.0.2.30")],
            command_nodes=[CommandNode(name="login0", ip="10.0.0.10")])
        port = free_port()
        config = uvicorn.Config(create_app(portal, "browser-test-secret-" + "x" * 32), host="127.0.0.1",
                                port=port, log_level="warning", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.02)
    except BaseException as exc:
        started.set_exception(exc)
        raise
    started.set_result(PortalServer(f"http://127.0.0.1:{port}", portal, store, runner,
                                    asyncio.get_running_loop()))
    await asyncio.to_thread(stop.wait)
    server.should_exit = True
    await serving
    feed_task.cancel()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium through Playwright (skips where either is missing)."""
    import pytest

    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (axe's rules: WCAG 2.x A/AA and best practice).
    Evaluated through the DevTools protocol, so the portal's CSP needs no exception."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text())
    # WCAG 2.2's target size (24 px) too, which axe leaves off by default.
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations'],"
        " rules: {'target-size': {enabled: true}}})")
    return list(result["violations"])


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation (id, impact, what it means) and one per node it was found on."""
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"]:
            lines.append(f"    {' '.join(str(t) for t in node['target'])}: {node.get('failureSummary', '')}"
                         .replace("\n", " "))
    return "\n".join(lines)


# Controls a keyboard cannot be trusted with: links without a target, script-only clicks,
# elements that play a button or link instead of being one, a tab order of their own.
NOT_NATIVE = """() => Array.from(document.querySelectorAll(
    "a:not([href]), [onclick], [role=button]:not(button), [role=link]:not(a),"
    + " [tabindex]:not([tabindex='0'], [tabindex='-1'])")).map((el) => el.outerHTML.slice(0, 120))"""


def native_controls(page: Any) -> list[dict[str, Any]]:
    """The page's controls that are not plain <a href>, <button> or form fields, as a violation."""
    found = page.evaluate(NOT_NATIVE)
    if not found:
        return []
    return [{"id": "native-controls", "impact": "serious", "help": "Controls are <a href> and <button>",
             "nodes": [{"target": [html], "failureSummary": ""} for html in found]}]


def check_accessible(page: Any, what: str) -> list[dict[str, Any]]:
    """The page's serious and critical violations (printed); the others are printed as notes."""
    violations = axe_violations(page) + native_controls(page)
    fatal = [v for v in violations if v["impact"] in FATAL_IMPACTS]
    others = [v for v in violations if v["impact"] not in FATAL_IMPACTS]
    if others:
        print(f"axe on {what} ({page.url}), not fatal:\n{describe(others)}")
    if fatal:
        print(f"axe on {what} ({page.url}):\n{describe(fatal)}")
    return fatal

