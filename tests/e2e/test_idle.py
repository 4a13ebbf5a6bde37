"""Idle sessions on the minicluster: a bwvisu of its own with a short idle-timeout, two port-echo
sessions; the one nobody talks to is cancelled with the reason "idle", the one a client keeps
talking to (one open connection, a line every few seconds) runs on.

The gateway agents read their gateways' connection counters (conntrack) every activity-interval
(2 s here); the traffic goes only to the gateways' 10.200.0.x addresses.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args, write_isolated_config
from tests.e2e.conftest import BwvisuSystem, Minicluster, system_up
from tests.e2e.test_forwarding import available, eventually, finished, secret_of, submit, wait_job

pytestmark = pytest.mark.timeout(600)

IDLE_MINUTES = 0.5  # 30 s without traffic, and the warning 15 s before
ACTIVITY_INTERVAL = 2.0
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def idle_system(minicluster: Minicluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BwvisuSystem]:
    """A bwvisu of its own (ports, state, job tag) with a short idle policy."""
    base = tmp_path_factory.mktemp("bwvisu-idle")
    config_path = write_isolated_config(minicluster.config_path, base)
    config = json.loads(config_path.read_text())
    config.update({"idle-timeout": IDLE_MINUTES, "idle-warning": IDLE_MINUTES / 2,
                   "activity-interval": ACTIVITY_INTERVAL})
    config_path.write_text(json.dumps(config, indent=2))
    with system_up(config_path) as system:
        yield system


@pytest.fixture
async def api(idle_system: BwvisuSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(**runner_api_client_args(idle_system.settings), timeout=90) as client:
        yield client


@pytest.fixture
async def portal(idle_system: BwvisuSystem, minicluster: Minicluster) -> AsyncIterator[httpx.AsyncClient]:
    """The system's portal (started by `bwvisu up`), logged in as alice."""
    web = idle_system.settings.web
    async with httpx.AsyncClient(base_url=f"http://{web.host}:{web.port}", timeout=30) as client:
        csrf = CSRF.search((await client.get("/login")).text)
        assert csrf is not None, "the login form has its CSRF token"
        form = {"csrf": csrf.group(1), "username": "alice", "password": minicluster.passwords["alice"],
                "next": "/sessions"}
        r = await client.post("/login", data=form)
        assert r.status_code == 303, r.text
        yield client


async def card_of(portal: httpx.AsyncClient, job_id: str) -> str:
    """The job's card on alice's sessions page ("" if not there)."""
    page = await portal.get("/sessions")
    assert page.status_code == 200, page.text
    for part in page.text.split("<article")[1:]:
        if f'data-job="{job_id}"' in part:
            return part.split("</article>", 1)[0]
    return ""


async def cancelled(api: httpx.AsyncClient, job_id: str) -> bool:
    """Whether the job is cancelled (or over) now; a 503 (the job changing meanwhile) is asked again."""
    r = await api.delete(f"/jobs/{job_id}")
    assert r.status_code in (200, 404, 503), r.text
    return r.status_code != 503


class Chatter:
    """One connection to a port-echo session through its gateway, a line every `every` seconds."""

    def __init__(self, host: str, port: int, secret: str, every: float = 3.0) -> None:
        assert host.startswith("10.200.0."), host
        self._conn = socket.create_connection((host, port), timeout=10)
        self._file = self._conn.makefile("rwb")
        self._file.write(secret.encode() + b"\n")
        self._file.flush()
        assert self._file.readline().startswith(b"port-echo "), "the session greets its owner"
        self._every = every
        self._stop = threading.Event()
        self.lines = 0
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._talk, daemon=True)
        self._thread.start()

    def _talk(self) -> None:
        try:
            while not self._stop.wait(self._every):
                self._file.write(b"still here\n")
                self._file.flush()
                assert self._file.readline() == b"still here\n"
                self.lines += 1
        except (OSError, AssertionError) as exc:
            self.error = exc

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self._file.close()
        self._conn.close()


async def test_a_silent_session_is_cancelled_as_idle_and_a_talking_one_is_not(
    api: httpx.AsyncClient, portal: httpx.AsyncClient, idle_system: BwvisuSystem
) -> None:
    silent = await submit(api, "port-echo", seconds="600", runtime="10")
    talking = await submit(api, "port-echo", seconds="600", runtime="10")
    chatter: Chatter | None = None
    try:
        # The client starts talking as soon as its session answers (the limit runs from then on).
        job = await wait_job(api, talking, available, timeout=90)
        (service,) = job["services"]
        secret = await secret_of(api, talking)
        chatter = await asyncio.to_thread(Chatter, service["external-ip"], service["external-port"], secret)
        became_available = datetime.fromisoformat(job["last-activity"])
        await wait_job(api, silent, available, timeout=90)

        # The silent one: its owner is warned on its card, then it is ended by the policy, with the
        # reason in its details and on the card.
        warned = []

        async def silent_ended() -> bool:
            card = await card_of(portal, silent)
            if "will be ended in" in card and 'data-testid="idle-warning"' in card:
                warned.append(card)
            return bool((await api.get(f"/jobs/{silent}")).json()["state"] == "finished")

        await eventually(silent_ended, "the silent session ended", timeout=IDLE_MINUTES * 60 + 60)
        assert warned, "the owner was warned before the end"
        ended = (await api.get(f"/jobs/{silent}")).json()
        assert "idle" in ended["details"], ended
        assert "Cancelled (idle)" in await card_of(portal, silent)

        # The talking one has been open longer than the limit by now and runs on; the one open
        # connection's traffic moved its last activity on.
        current = (await api.get(f"/jobs/{talking}")).json()
        assert current["state"] == "available", current
        assert datetime.fromisoformat(current["last-activity"]) > became_available, current
        await asyncio.sleep(IDLE_MINUTES * 60)  # once more the whole limit, with traffic all along
        current = (await api.get(f"/jobs/{talking}")).json()
        assert current["state"] == "available" and "idle" not in current["details"], current
        assert chatter.error is None and chatter.lines > 0
        card = await card_of(portal, talking)
        assert "Ready" in card and "will be ended" not in card and "idle for" not in card, card

        # The operator's view tells why the silent one ended.
        shown = await asyncio.to_thread(idle_system.cli, "job", silent)
        assert shown.returncode == 0, shown.stderr
        assert "cancel requested: idle" in shown.stdout, shown.stdout
        assert "SessionActivity" in (await asyncio.to_thread(idle_system.cli, "job", talking)).stdout
    finally:
        if chatter is not None:
            await asyncio.to_thread(chatter.close)
        for job_id in (silent, talking):
            await eventually(lambda j=job_id: cancelled(api, j), f"job {job_id} cancelled")
    await wait_job(api, talking, finished)
