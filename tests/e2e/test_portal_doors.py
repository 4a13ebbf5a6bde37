"""The portal's doors with real PAM and etcd: login limits per address, logout for every replica.

Two portal processes on the same config stand for two replicas behind a load balancer; a third,
started after the logout, for a restart.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import BwvisuSystem, Minicluster, Portal, portal_process
from tests.e2e.test_portal import csrf_of

PER_ADDRESS = 3


def portal_replica(system: BwvisuSystem, base: Path, name: str) -> contextlib.AbstractContextManager[Portal]:
    # One cookie key for all (<state-dir>/web-session.secret), as replicas behind one name share.
    return portal_process(system.config_path, base, name, login_delay=0.1, session_secret_file="",
                          login_max_failures_per_address=PER_ADDRESS, revocation_check_interval=0.5)


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
    with portal_replica(bwvisu_system, tmp_path, "a") as a, portal_replica(bwvisu_system, tmp_path, "b") as b:
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
    with portal_replica(bwvisu_system, tmp_path, "c") as c, httpx.Client(base_url=c.url, timeout=30) as again:
        again.cookies.set("bwvisu_session", cookie)
        r = again.get("/apps")
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), "a restart forgot it"


def test_failed_logins_from_one_address_are_limited(bwvisu_system: BwvisuSystem, minicluster: Minicluster,
                                                     tmp_path: Path) -> None:
    with portal_replica(bwvisu_system, tmp_path, "limits") as portal, \
            httpx.Client(base_url=portal.url, timeout=30) as client:
        for _ in range(PER_ADDRESS):
            assert post_login(client, "bob", "not-bobs-password").status_code == 401
        r = post_login(client, "bob", minicluster.passwords["bob"])
        assert r.status_code == 429 and "Too many failed logins from your address" in r.text
        assert int(r.headers["retry-after"]) > 0
        assert "not-bobs-password" not in portal.log()
