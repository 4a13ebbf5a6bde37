"""A portal over in-memory stores and fakes, driven through its HTTP edge."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.settings import CommandNode, GatewayNode
from tests.fakes.authenticator import USERS, FakeAuthenticator
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.groups import FakeGroups
from tests.fakes.job_runner import FakeRunner
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore
from web_portal.app import create_app
from web_portal.domain.bundles import Bundle, parse_bundle
from web_portal.portal import Portal

SECRET = "test-secret-" + "x" * 40

XPRA = {
    "title": "Remote desktop",
    "description": "An Xpra desktop with a terminal, in your browser.",
    "icon": "desktop",
    "template": "xpra-desktop",
    "connect-url": "http://{host}:{port}/index.html?autoconnect=true",
    "runtime-field": "runtime",
    "fields": [
        {"name": "runtime", "type": "integer", "label": "Run time (minutes)", "default": 60,
         "min": 5, "max": 240},
        {"name": "cores", "type": "integer", "label": "Cores", "default": 1, "min": 1, "max": 8},
        {"name": "partition", "type": "choice", "label": "Partition", "choices": ["debug", "gpu"],
         "default": "debug"},
    ],
}


def xpra_bundle() -> Bundle:
    return parse_bundle("xpra-desktop.app.json", json.dumps(XPRA).encode())


@dataclass
class World:
    portal: Portal
    store: InMemoryEventStore
    feed: LiveJobs
    runner: FakeRunner
    auth: FakeAuthenticator

    def client(self) -> httpx.AsyncClient:
        app = create_app(self.portal, SECRET)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    store = InMemoryEventStore()
    feed = LiveJobs(store, InMemoryStateStore())
    task = asyncio.create_task(feed.run())
    runner, auth = FakeRunner(store, feed), FakeAuthenticator()
    portal = Portal(
        bundles={"xpra-desktop": xpra_bundle()}, runner=runner, feed=feed,
        groups=FakeGroups({"bwvisu-admin": {"carol"}}), prober=FakeProber(open_ports={("10.0.0.10", 22)}),
        authenticator=auth, login_delay=0.0, history=store,
        gateways=[GatewayNode(name="gw0", internal_ip="10.0.0.30", external_ip="192.0.2.30")],
        command_nodes=[CommandNode(name="login0", ip="10.0.0.10"),
                       CommandNode(name="login1", ip="10.0.0.11")],
    )
    yield World(portal, store, feed, runner, auth)
    task.cancel()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


async def login(client: httpx.AsyncClient, user: str, password: str | None = None) -> httpx.Response:
    page = await client.get("/login")
    return await client.post("/login", data={"csrf": csrf_of(page.text), "username": user,
                                             "password": USERS[user] if password is None else password,
                                             "next": "/apps"})


@pytest.fixture
async def alice(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with world.client() as client:
        assert (await login(client, "alice")).status_code == 303
        yield client


@pytest.fixture
async def bob(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with world.client() as client:
        assert (await login(client, "bob")).status_code == 303
        yield client
