"""A logout reaches every portal replica and survives a restart: the revocation lives in real etcd."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.live_jobs import LiveJobs
from tests.fakes.authenticator import FakeAuthenticator
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.groups import FakeGroups
from tests.fakes.job_runner import FakeRunner
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore
from tests.unit.web.conftest import SECRET, csrf_of
from web_portal.app import create_app
from web_portal.portal import Portal
from web_portal.revocations import Revocations

pytestmark = pytest.mark.integration


async def portal_process(etcd_server, prefix: str, stack: list[EtcdStateStore]) -> httpx.AsyncClient:
    """What `python -m web_portal` builds, with its own connection to etcd; fakes for the rest."""
    store = await EtcdStateStore.connect(etcd_server.host, etcd_server.port, prefix=prefix)
    stack.append(store)
    events = InMemoryEventStore()
    feed = LiveJobs(events, InMemoryStateStore())
    portal = Portal(bundles={}, runner=FakeRunner(events, feed), feed=feed, groups=FakeGroups({}),
                    prober=FakeProber(), authenticator=FakeAuthenticator(), login_delay=0.0,
                    revocations=Revocations(store, cache_for=0.0))
    app = create_app(portal, SECRET)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal")


@pytest.fixture
async def stores() -> AsyncIterator[list[EtcdStateStore]]:
    opened: list[EtcdStateStore] = []
    yield opened
    for store in opened:
        await store.close()


async def test_a_cookie_revoked_on_one_replica_is_refused_by_another_built_afresh(etcd_server, stores):
    prefix = f"/test-{uuid.uuid4().hex[:8]}/"
    async with await portal_process(etcd_server, prefix, stores) as alice:
        page = await alice.get("/login")
        r = await alice.post("/login", data={"csrf": csrf_of(page.text), "username": "alice",
                                             "password": "alice-pw", "next": "/apps"})
        assert r.status_code == 303
        copied = dict(alice.cookies)
        assert (await alice.get("/apps")).status_code == 200
        async with await portal_process(etcd_server, prefix, stores) as thief:
            thief.cookies.update(copied)
            assert (await thief.get("/apps")).status_code == 200, "a live login works on a replica"
            page = await alice.get("/apps")
            assert (await alice.post("/logout", data={"csrf": csrf_of(page.text)})).status_code == 303
            assert (await thief.get("/apps")).status_code == 303, "the other replica refuses it"
    # Both processes are gone; a new one (a restart) reads the revocation from etcd.
    async with await portal_process(etcd_server, prefix, stores) as restarted:
        restarted.cookies.update(copied)
        r = await restarted.get("/apps")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert await stores[-1].login_revoked("no-such-login") is False
