"""Connect records the owner's client address (for source-restricted forwards), then opens the app."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from bwvisu_common import events as ev
from tests.unit.web.conftest import SECRET, World, csrf_of, login
from tests.unit.web.test_portal_http import LAUNCH
from web_portal.app import create_app
from web_portal.domain.client_address import client_address as seen_address
from web_portal.domain.client_address import gateway_address

APP_URL = "http://192.0.2.30:21001/index.html?autoconnect=true"
PROXY = [ipaddress.ip_network("10.1.0.0/24")]


def client_address(peer: str | None, forwarded_for: list[str],
                   proxies: list[ipaddress.IPv4Network]) -> str | None:
    return gateway_address(seen_address(peer, forwarded_for, proxies), proxies)


def test_the_client_is_the_peer_or_the_right_most_address_a_trusted_proxy_did_not_add() -> None:
    assert client_address("198.51.100.7", [], PROXY) == "198.51.100.7"
    assert client_address("198.51.100.7", ["203.0.113.1"], PROXY) == "198.51.100.7", "untrusted peer"
    assert client_address("10.1.0.5", ["6.6.6.6, 203.0.113.1"], PROXY) == "203.0.113.1"
    assert client_address("10.1.0.5", ["6.6.6.6", "203.0.113.1, 10.1.0.9"], PROXY) == "203.0.113.1"
    assert client_address("::ffff:198.51.100.7", [], PROXY) == "198.51.100.7"
    assert client_address("2001:db8::1", [], PROXY) == "2001:db8::1"  # runner-api refuses it
    assert client_address("10.1.0.5", ["evil, 203.0.113.1"], PROXY) == "203.0.113.1"
    assert client_address("10.1.0.5", ["203.0.113.1, evil"], PROXY) is None
    assert client_address("10.1.0.5", [], PROXY) is None, "only a proxy: no client to name"
    assert client_address(None, [], PROXY) is None


def client_from(world: World, host: str) -> httpx.AsyncClient:
    app = create_app(world.portal, SECRET)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 40000)),
                             base_url="http://portal")


async def available_job(world: World, uid: str = "alice") -> str:
    job_id = await world.runner.submit(uid, "xpra-desktop", LAUNCH)
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    await world.store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                              ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=fwd),
                              ev.PortOpen(job_id=job_id, external_port=21001)])
    await world.feed.wait_for(job_id, lambda j: j.state == "available", 2)
    return job_id


async def press_connect(client: httpx.AsyncClient, job_id: str, **headers: str) -> httpx.Response:
    page = await client.get("/sessions")
    assert f'action="/sessions/{job_id}/connect"' in page.text
    return await client.post(f"/sessions/{job_id}/connect", data={"csrf": csrf_of(page.text)},
                             headers=headers)


@pytest.fixture
async def logged_in(world: World) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {name: client_from(world, host) for name, host in
               [("alice", "198.51.100.7"), ("alice6", "2001:db8::7"), ("bob", "203.0.113.66"),
                ("proxied", "10.1.0.5")]}
    for name, client in clients.items():
        await login(client, "bob" if name == "bob" else "alice")
    yield clients
    await asyncio.gather(*(c.aclose() for c in clients.values()))


async def test_connect_records_the_address_and_opens_the_application(world: World, logged_in) -> None:
    job_id = await available_job(world)
    r = await press_connect(logged_in["alice"], job_id)
    assert r.status_code == 303 and r.headers["location"].startswith(APP_URL + "&password=")
    assert world.feed.get(job_id).client_addresses == ["198.51.100.7"]
    assert "http://192.0.2.30:*" in r.headers["content-security-policy"].split("form-action")[1]
    async with world.client() as carol:
        await login(carol, "carol")
        page = (await carol.get("/admin")).text
        assert '<td data-testid="clients">198.51.100.7</td>' in page


async def test_only_the_owner_connects_and_only_with_the_forms_token(world: World, logged_in) -> None:
    job_id = await available_job(world)
    r = await logged_in["bob"].post(f"/sessions/{job_id}/connect",
                                    data={"csrf": csrf_of((await logged_in["bob"].get("/sessions")).text)})
    assert r.status_code == 404
    r = await logged_in["alice"].post(f"/sessions/{job_id}/connect", data={"csrf": "forged"})
    assert r.status_code == 403
    assert world.feed.get(job_id).client_addresses == []


async def test_behind_a_trusted_proxy_the_forwarded_client_is_recorded(world: World, logged_in) -> None:
    world.portal.trusted_networks = list(PROXY)
    job_id = await available_job(world)
    r = await press_connect(logged_in["proxied"], job_id, **{"X-Forwarded-For": "6.6.6.6, 203.0.113.9"})
    assert r.status_code == 303
    assert world.feed.get(job_id).client_addresses == ["203.0.113.9"]


@pytest.mark.parametrize(("restricted", "status"), [(False, 303), (True, 409)])
async def test_an_address_no_gateway_can_match(world: World, logged_in, restricted: bool,
                                               status: int) -> None:
    world.portal.restrict_forwards = restricted
    job_id = await available_job(world)
    r = await press_connect(logged_in["alice6"], job_id)
    assert r.status_code == status
    if restricted:
        assert "2001:db8::7 cannot be let through" in r.text
    assert world.feed.get(job_id).client_addresses == []
