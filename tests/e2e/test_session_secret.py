"""The per-session secret end to end, with a Jupyter notebook (real Slurm, gateway, chromium).

Alice starts a notebook in the portal; its Connect opens the notebook's tree in one click.
Someone without the secret, opening the same gateway port, gets Jupyter's login page. The
secret is only where it belongs: not on any command line of the compute node, in no event,
no service log, not in the job's log (which is 0600), not in bob's views; and once the job
ends, neither it nor the job's keyhole token is left in etcd.
"""

from __future__ import annotations

import asyncio
import re
import stat
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import msgspec
import pytest

from bwvisu_cli.testbed import runner_api_client_args
from bwvisu_common.state_keys import session_secret_key, token_key
from tests.e2e.conftest import BwvisuSystem, Minicluster
from tests.e2e.test_portal import (  # noqa: F401 (pytest fixtures used by name)
    ARTIFACTS,
    Portal,
    browser,
    browser_login,
    csrf_of,
    http_login,
    portal,
    wait_for_state,
)

pytestmark = pytest.mark.timeout(600)
T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from this sync test (Playwright's loop owns this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def api_client(system: BwvisuSystem) -> httpx.Client:
    return httpx.Client(**runner_api_client_args(system.settings), timeout=30)


def compute_node_command_lines(minicluster: Minicluster) -> str:
    """Every process's command line on every compute node, as any user there can list them."""
    return "\n".join(minicluster.in_host(node, ["ps", "-eo", "args"]).stdout
                     for node in minicluster.compute_nodes)


async def stored_secrets(system: BwvisuSystem, job_id: str) -> tuple[bytes | None, bytes | None]:
    async with system.stores() as (_, state):
        return (await state.get_secret(token_key(job_id)),
                await state.get_secret(session_secret_key(job_id)))


async def every_event_of(system: BwvisuSystem, job_id: str) -> bytes:
    async with system.events() as events:
        return b"\n".join(msgspec.json.encode(e) for _, e in await events.read_job(job_id))


def all_service_logs(system: BwvisuSystem, web: Portal) -> str:
    logs = sorted((system.state_dir / "logs").glob("*.log"))
    assert logs, "the system wrote no logs"
    return "\n".join(p.read_text(errors="replace") for p in [*logs, web.log_path, system.log_path])


def test_jupyter_opens_only_with_the_portals_connect_and_its_secret_stays_put(
        browser, portal: Portal, bwvisu_system: BwvisuSystem, minicluster: Minicluster) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    context, page = browser_login(browser, portal, "alice", minicluster.passwords["alice"])
    job_id = ""
    try:
        page.click("[data-testid=launch-jupyter-notebook]")
        page.click("[data-testid=start]")
        page.wait_for_url(re.compile(r".*/sessions#s-[0-9a-f]+$"), timeout=90_000)
        job_id = page.url.rsplit("#s-", 1)[1]
        card = page.locator(f"#s-{job_id}")
        seen: list[str] = []
        assert wait_for_state(card, "Ready", 150, seen) == "Ready", f"states: {seen}\n{portal.log()}"

        with api_client(bwvisu_system) as api:
            mine = api.get(f"/jobs/{job_id}", params={"uid": "alice"}).json()
            secret = mine["connect"]["secret"]
            assert re.fullmatch(r"[0-9a-f]{64}", secret), "256 random bits"
            (service,) = mine["services"]
            gateway = f"http://{service['external-ip']}:{service['external-port']}"
            assert mine["connect"]["url"] == f"{gateway}/tree?token={secret}"
            # Without the owner named, or for bob: the job, but never its secret.
            assert secret not in api.get(f"/jobs/{job_id}").text
            bobs = api.get(f"/jobs/{job_id}", params={"uid": "bob"})
            assert bobs.status_code == 404 and secret not in bobs.text

        # One click in the portal: the notebook's tree, already logged in.
        with context.expect_page() as opened:
            card.get_by_test_id("connect").click()
        notebook = opened.value
        notebook.wait_for_selector("#notebook_list", timeout=60_000)
        notebook.screenshot(path=str(ARTIFACTS / "jupyter-after-connect.png"))
        assert secret not in page.content(), "the sessions page never holds the secret"

        # A stranger at the same gateway port, without the token: Jupyter's login page, no tree.
        stranger = browser.new_context()
        try:
            other = stranger.new_page()
            other.goto(f"{gateway}/tree")
            other.wait_for_selector("#password_input", timeout=30_000)
            other.screenshot(path=str(ARTIFACTS / "jupyter-without-token.png"))
            assert other.locator("#notebook_list").count() == 0
            assert "/login" in other.url
        finally:
            stranger.close()

        with http_login(portal, "bob", minicluster.passwords["bob"]) as bob:
            assert secret not in bob.get("/sessions").text
            token = csrf_of(bob.get("/apps").text)
            r = bob.post(f"/sessions/{job_id}/connect", data={"csrf": token})
            assert r.status_code == 404 and secret not in r.text and "location" not in r.headers

        keyhole_token, stored = run_async(stored_secrets(bwvisu_system, job_id))
        assert keyhole_token is not None and stored == secret.encode()
        command_lines = compute_node_command_lines(minicluster)
        assert "jupyter" in command_lines, "the notebook runs on a compute node"
        assert secret not in command_lines and keyhole_token.decode() not in command_lines
        events = run_async(every_event_of(bwvisu_system, job_id))
        assert secret.encode() not in events and keyhole_token not in events
        logs = all_service_logs(bwvisu_system, portal)
        assert secret not in logs and keyhole_token.decode() not in logs

        log_file = minicluster.home("alice") / f"bwvisu-job-{job_id}.out"
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600, oct(log_file.stat().st_mode)
        assert secret not in log_file.read_text(errors="replace"), "the token is in the job's log"

        card.get_by_test_id("cancel").click()
        assert wait_for_state(page.locator(f"#s-{job_id}"), "Cancelled", 90) == "Cancelled"
        assert_secrets_gone(bwvisu_system, job_id)
        assert secret not in log_file.read_text(errors="replace")
    finally:
        page.screenshot(path=str(ARTIFACTS / "jupyter-sessions.png"), full_page=True)
        context.close()
        if job_id:
            with api_client(bwvisu_system) as api:
                api.delete(f"/jobs/{job_id}")  # 404 once it ended


def assert_secrets_gone(system: BwvisuSystem, job_id: str, timeout: float = 30) -> None:
    """The job is over: its keyhole token and session secret leave etcd (not only at their TTL)."""
    deadline = time.monotonic() + timeout
    while run_async(stored_secrets(system, job_id)) != (None, None):
        assert time.monotonic() < deadline, "the job's token or secret outlived it in etcd"
        time.sleep(0.3)
