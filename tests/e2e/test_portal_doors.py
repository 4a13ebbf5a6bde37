"""The portal's doors with real PAM and etcd: login limits per address, logout for every replica.

Two portal processes on the same config stand for two replicas behind a load balancer; a third,
started after the logout, for a restart.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bwvisu_cli.servers import free_port, listening
from tests.e2e.conftest import BwvisuSystem, Minicluster
from tests.e2e.test_portal import Portal, csrf_of

PER_ADDRESS = 3


@contextlib.contextmanager
def portal_process(system: BwvisuSystem, base: Path, name: str) -> Iterator[Portal]:
    config = json.loads(system.config_path.read_text())
    port = free_port()
    config["web"] = {**config.get("web", {}), "host": "127.0.0.1", "port": port, "login-delay": 0.1,
                     "session-secret-file": "",  # one key for all: <state-dir>/web-session.secret
                     "login-max-failures-per-address": PER_ADDRESS, "revocation-check-interval": 0.5}
    config_path = base / f"{name}.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = base / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "web_portal", "--config", str(config_path)],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    portal = Portal(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 90
        while not listening("127.0.0.1", port):
            assert process.poll() is None, f"the portal exited:\n{portal.log()}"
            assert time.monotonic() < deadline, f"the portal did not listen:\n{portal.log()}"
            time.sleep(0.3)
        yield portal
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def post_login(client: httpx.Client, user: str, password: str) -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "username": user, "password": password,
                                       "next": "/apps"})


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_logout_ends_a_copied_cookie_on_every_replica_and_after_a_restart(
        bwvisu_system: BwvisuSystem, minicluster: Minicluster, tmp_path: Path) -> None:
    with portal_process(bwvisu_system, tmp_path, "a") as a, portal_process(bwvisu_system, tmp_path, "b") as b:
        with httpx.Client(base_url=a.url, timeout=30) as alice, \
                httpx.Client(base_url=b.url, timeout=30) as thief:
            assert post_login(alice, "alice", minicluster.passwords["alice"]).status_code == 303
            cookie = alice.cookies["bwvisu_session"]
            thief.cookies.set("bwvisu_session", cookie)
            assert thief.get("/apps").status_code == 200, "one login, any replica"
            page = alice.get("/apps")
            assert alice.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 303

            def refused() -> bool:
                thief.cookies.set("bwvisu_session", cookie)
                return thief.get("/apps").status_code == 303

            wait_for(refused, 5, f"replica b still takes the logged-out cookie:\n{b.log()}")
    with portal_process(bwvisu_system, tmp_path, "c") as c, httpx.Client(base_url=c.url, timeout=30) as again:
        again.cookies.set("bwvisu_session", cookie)
        r = again.get("/apps")
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), "a restart forgot it"


def test_failed_logins_from_one_address_are_limited(bwvisu_system: BwvisuSystem, minicluster: Minicluster,
                                                     tmp_path: Path) -> None:
    with portal_process(bwvisu_system, tmp_path, "limits") as portal, \
            httpx.Client(base_url=portal.url, timeout=30) as client:
        for _ in range(PER_ADDRESS):
            assert post_login(client, "bob", "not-bobs-password").status_code == 401
        r = post_login(client, "bob", minicluster.passwords["bob"])
        assert r.status_code == 429 and "Too many failed logins from your address" in r.text
        assert int(r.headers["retry-after"]) > 0
        assert "not-bobs-password" not in portal.log()
