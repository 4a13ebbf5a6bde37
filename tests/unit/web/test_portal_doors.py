"""The portal's doors over HTTP: login limits, logout for every replica, the SSO header once only."""

from __future__ import annotations

import dataclasses
import time

import httpx
import pytest
from starlette.requests import Request

from bwvisu_common.errors import DependencyUnavailable
from tests.fakes.state_store import InMemoryStateStore
from tests.samples import sample
from tests.unit.web.conftest import SECRET, World, csrf_of, login
from web_portal.adapters.auth import TrustedHeaderAuthenticator
from web_portal.app import create_app
from web_portal.domain.client_address import parse_networks
from web_portal.domain.login_limits import LoginLimits
from web_portal.portal import Portal
from web_portal.revocations import Revocations
from web_portal.security import while_logged_in


def client_of(portal: Portal) -> httpx.AsyncClient:
    # httpx's ASGI transport comes from 127.0.0.1.
    app = create_app(portal, SECRET)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal")


async def login_from(client: httpx.AsyncClient, address: str | None, user: str,
                     password: str) -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    page = await client.get("/login")
    return await client.post("/login", headers=headers, data={
        "csrf": csrf_of(page.text), "username": user, "password": password, "next": "/apps"})


@pytest.fixture
def limited(world: World) -> World:
    world.portal.login_limits = LoginLimits(per_address=3, total=5, window=600)
    world.portal.trusted_networks = parse_networks(["127.0.0.1"])  # a proxy in front
    return world


async def test_failures_from_one_address_are_limited_with_retry_after(limited: World):
    before = {o: sample("bwvisu_portal_logins_total", outcome=o) for o in ("failed", "refused", "succeeded")}
    async with limited.client() as client:
        for _ in range(3):
            assert (await login_from(client, "198.51.100.7", "alice", "guess")).status_code == 401
        r = await login_from(client, "198.51.100.7", "alice", "alice-pw")
        assert r.status_code == 429, "not even the right password gets through: no guessing oracle"
        assert "Too many failed logins from your address" in r.text
        assert 590 <= int(r.headers["retry-after"]) <= 600
        assert limited.auth.asked == ["alice"] * 3, "a refused attempt never reaches PAM"
        assert (await client.get("/apps")).status_code == 303
        r = await login_from(client, "203.0.113.9", "alice", "alice-pw")
        assert r.status_code == 303, "another address logs in"
        assert (await login_from(client, "198.51.100.7", "bob", "bob-pw")).status_code == 429, \
            "a success elsewhere does not reset the blocked address"
    counted = {o: sample("bwvisu_portal_logins_total", outcome=o) - n for o, n in before.items()}
    assert counted == {"failed": 3, "refused": 2, "succeeded": 1}


async def test_all_addresses_together_are_limited(limited: World):
    async with limited.client() as client:
        for i in range(5):
            assert (await login_from(client, f"198.51.100.{i}", "alice", "guess")).status_code == 401
        r = await login_from(client, "203.0.113.50", "alice", "alice-pw")
        assert r.status_code == 429 and "Too many failed logins on this portal" in r.text
        assert int(r.headers["retry-after"]) > 0


async def test_a_client_cannot_pick_its_address_past_an_untrusted_peer(limited: World):
    limited.portal.trusted_networks = []
    async with limited.client() as client:
        for i in range(3):
            assert (await login_from(client, f"198.51.100.{i}", "alice", "guess")).status_code == 401
        r = await login_from(client, "198.51.100.99", "alice", "alice-pw")
        assert r.status_code == 429, "X-Forwarded-For from an untrusted peer names no one"


async def test_a_right_password_does_not_count_as_a_failure(limited: World):
    async with limited.client() as client:
        for _ in range(5):
            assert (await login_from(client, "198.51.100.7", "alice", "alice-pw")).status_code == 303
    assert limited.portal.login_limits.failures("198.51.100.7") == 0


def replica(world: World, store: InMemoryStateStore, cache_for: float = 0.0, clock=None) -> Portal:
    """Another portal process over the same state store (and cookie key)."""
    revocations = Revocations(store, cache_for=cache_for, **({"clock": clock} if clock else {}))
    return dataclasses.replace(world.portal, revocations=revocations)


async def logout(client: httpx.AsyncClient) -> None:
    page = await client.get("/apps")
    assert (await client.post("/logout", data={"csrf": csrf_of(page.text)})).status_code == 303


async def test_a_logout_on_one_replica_ends_the_login_on_another_and_after_a_restart(world: World):
    store = InMemoryStateStore()
    a, b = replica(world, store), replica(world, store)
    async with client_of(a) as alice:
        assert (await login(alice, "alice")).status_code == 303
        copied = dict(alice.cookies)
        async with client_of(b) as thief:
            thief.cookies.update(copied)
            assert (await thief.get("/sessions")).status_code == 200, "one login, any replica"
            await logout(alice)
            r = await thief.get("/sessions")
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
            assert 'bwvisu_session=null' in r.headers["set-cookie"], "the answer drops the cookie"
        async with client_of(replica(world, store)) as after_restart:
            after_restart.cookies.update(copied)
            assert (await after_restart.get("/sessions")).status_code == 303
        assert (await login(alice, "alice")).status_code == 303
        assert (await alice.get("/sessions")).status_code == 200, "a new login is a new id"


async def test_another_replica_learns_of_a_logout_within_its_check_interval(world: World):
    store, now = InMemoryStateStore(), [1000.0]
    a, b = replica(world, store), replica(world, store, cache_for=2.0, clock=lambda: now[0])
    async with client_of(a) as alice, client_of(b) as thief:
        await login(alice, "alice")
        thief.cookies.update(dict(alice.cookies))
        assert (await thief.get("/sessions")).status_code == 200
        await logout(alice)
        assert (await thief.get("/sessions")).status_code == 200, "cached for the interval"
        now[0] += 2.5
        assert (await thief.get("/sessions")).status_code == 303


class DownStore(InMemoryStateStore):
    down = False

    async def login_revoked(self, login_id: str) -> bool:
        if self.down:
            raise DependencyUnavailable("etcd: connection refused")
        return await super().login_revoked(login_id)


async def test_while_the_store_is_down_only_logins_confirmed_before_go_on(world: World):
    store, now = DownStore(), [0.0]
    a, b = replica(world, store), replica(world, store, cache_for=1.0, clock=lambda: now[0])
    async with client_of(a) as alice, client_of(b) as other, client_of(b) as stranger:
        await login(alice, "alice")
        other.cookies.update(dict(alice.cookies))
        assert (await other.get("/sessions")).status_code == 200
        await login(stranger, "bob")  # made on b: b knows it is fresh
        store.down = True
        now[0] += 5
        assert (await other.get("/sessions")).status_code == 200, "confirmed before: last answer holds"
        assert (await stranger.get("/sessions")).status_code == 200
        async with client_of(replica(world, store)) as unknown:
            unknown.cookies.update(dict(alice.cookies))
            assert (await unknown.get("/sessions")).status_code == 303, "never confirmed: log in again"


async def test_a_login_ends_after_its_maximum_age_even_while_in_use(world: World,
                                                                    monkeypatch: pytest.MonkeyPatch):
    import web_portal.security as security

    async with world.client() as client:
        await login(client, "alice")
        assert (await client.get("/sessions")).status_code == 200
        real = security.time.time
        monkeypatch.setattr(security.time, "time", lambda: real() + world.portal.session_max_age + 5)
        assert (await client.get("/sessions")).status_code == 303


@pytest.mark.parametrize("headers", [
    [("X-Remote-User", "alice"), ("X-Remote-User", "bob")],
    [("X-Remote-User", "alice, bob")],
    [("X-Remote-User", "alice,bob")],
])
async def test_a_doubled_sso_header_is_a_400_not_a_login(world: World, headers):
    world.portal.authenticator = None
    world.portal.header_auth = TrustedHeaderAuthenticator("X-Remote-User", ["127.0.0.1"])
    async with world.client() as client:
        r = await client.get("/sessions", headers=headers)
        assert r.status_code == 400 and "more than once or named several users" in r.text
        assert ">alice<" not in r.text and ">bob<" not in r.text, "nobody is logged in"
        assert (await client.get("/sessions", headers=[("X-Remote-User", "bob")])).status_code == 200
        r = await client.get("/sessions", headers=headers)
        assert r.status_code == 400, "refused also after a good request of the same browser"


async def test_from_an_untrusted_peer_the_sso_header_is_ignored_however_often(world: World):
    world.portal.authenticator = None
    world.portal.header_auth = TrustedHeaderAuthenticator("X-Remote-User", ["10.9.9.9"])
    async with world.client() as client:
        r = await client.get("/sessions", headers=[("X-Remote-User", "a"), ("X-Remote-User", "b")])
        assert r.status_code == 403


async def test_a_live_stream_ends_when_its_login_is_revoked_elsewhere(world: World):
    store = InMemoryStateStore()
    world.portal.revocations = Revocations(store, cache_for=0.0)
    scope = {"type": "http", "app": create_app(world.portal, SECRET), "headers": [],
             "session": {"user": "alice", "sid": "sid-1", "at": int(time.time())}}
    closed = []

    async def forever():
        try:
            while True:
                yield "event\n\n"
        finally:
            closed.append(True)

    stream = while_logged_in(Request(scope), forever())
    assert await anext(stream) == "event\n\n"
    await store.revoke_login("sid-1", ttl=60)  # a logout on another replica
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert closed, "the inner stream was closed too"


async def test_reaching_a_limit_is_logged_once_not_per_refused_attempt(limited: World,
                                                                       caplog: pytest.LogCaptureFixture):
    async with limited.client() as client:
        with caplog.at_level("INFO", logger="web_portal.handlers.auth"):
            for _ in range(10):
                await login_from(client, "198.51.100.7", "alice", "guess")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["3 failed logins from 198.51.100.7 within 600 s: refusing it for now"]
    assert not any("guess" in r.getMessage() for r in caplog.records), "no password in the log"
