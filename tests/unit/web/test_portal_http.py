"""The portal through its HTTP edge: login, CSRF, launch, sessions, isolation, admin, live updates."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from fastapi.routing import APIRoute

from bwvisu_common import events as ev
from bwvisu_common.heartbeats import GatewayHeartbeats
from tests.fakes.job_runner import secret_of
from tests.unit.web.conftest import SECRET, World, csrf_of, login
from web_portal.adapters.auth import TrustedHeaderAuthenticator
from web_portal.app import create_app
from web_portal.handlers import admin, apps, auth, connect, sessions
from web_portal.handlers.sessions import live_cards

LAUNCH = {"runtime": "30", "cores": "2", "partition": "debug"}


async def launch(client: httpx.AsyncClient, **form: str) -> httpx.Response:
    page = await client.get("/apps/xpra-desktop")
    return await client.post("/apps/xpra-desktop", data={"csrf": csrf_of(page.text), **LAUNCH, **form})


async def test_login_sets_a_signed_httponly_samesite_cookie_and_opens_the_apps(world: World):
    async with world.client() as client:
        assert (await client.get("/apps")).headers["location"] == "/login?next=%2Fapps"
        r = await login(client, "alice")
        assert r.status_code == 303 and r.headers["location"] == "/apps"
        cookie = r.headers["set-cookie"].lower()
        assert "bwvisu_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        page = await client.get("/apps")
        assert page.status_code == 200 and "Remote desktop" in page.text and "alice" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_a_wrong_password_is_refused_clearly_and_slowly(world: World):
    world.portal.login_delay = 0.2
    async with world.client() as client:
        started = time.monotonic()
        r = await login(client, "alice", password="guess")
        assert r.status_code == 401 and "Wrong user name or password." in r.text
        assert time.monotonic() - started >= 0.2
        assert (await client.get("/apps")).status_code == 303, "still not logged in"
        page = await client.get("/login")
        r = await client.post("/login", data={"csrf": csrf_of(page.text), "username": "alice;id",
                                              "password": "x"})
        assert r.status_code == 401 and world.auth.asked == ["alice"], "a bad name never reaches PAM"


async def test_a_forged_cookie_is_not_a_login(world: World):
    async with world.client() as client:
        client.cookies.set("bwvisu_session", "eyJ1c2VyIjogImFsaWNlIn0=.forged.sig")
        assert (await client.get("/sessions")).status_code == 303


async def test_every_state_changing_form_needs_the_csrf_token(world: World, alice: httpx.AsyncClient):
    job_id = await world.runner.submit("alice", "xpra-desktop", LAUNCH)
    routes = [r for m in (admin, apps, auth, sessions, connect) for r in m.router.routes]
    posts = [r.path for r in routes if isinstance(r, APIRoute) and "POST" in r.methods]
    assert set(posts) == {"/login", "/logout", "/apps/{name}", "/sessions/{job_id}/cancel",
                          "/sessions/{job_id}/connect", "/sessions/{job_id}/extend"}
    for path in posts:
        url = path.replace("{name}", "xpra-desktop").replace("{job_id}", job_id)
        for form in ({}, {"csrf": "not-the-token"}):
            r = await alice.post(url, data={**form, **LAUNCH, "username": "bob", "password": "bob-pw",
                                            "minutes": "15"})
            assert r.status_code == 403, (url, form)
    assert not world.feed.get(job_id).cancel_requested
    assert len(world.feed.all()) == 1
    assert "alice" in (await alice.get("/apps")).text, "still alice, still logged in"


async def test_logout_ends_the_session_even_for_a_copied_cookie(world: World, alice: httpx.AsyncClient):
    copied = dict(alice.cookies)
    page = await alice.get("/apps")
    r = await alice.post("/logout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    async with world.client() as thief:
        thief.cookies.update(copied)
        assert (await thief.get("/sessions")).status_code == 303


async def test_launch_validates_then_lands_on_my_sessions(world: World, alice: httpx.AsyncClient):
    r = await launch(alice, runtime="100000")
    assert r.status_code == 400 and "At most 240" in r.text and world.feed.all() == []
    r = await launch(alice)
    assert r.status_code == 303 and r.headers["location"].startswith("/sessions#s-")
    (job,) = world.feed.all()
    assert job.uid == "alice" and job.template_name == "xpra-desktop" and job.variables == LAUNCH
    page = await alice.get("/sessions")
    assert f'id="s-{job.job_id}"' in page.text and "Waiting in the queue" in page.text


async def test_a_refusal_or_an_outage_of_the_cluster_is_shown_on_the_form(world: World,
                                                                         alice: httpx.AsyncClient):
    world.runner.users.discard("alice")
    r = await launch(alice)
    assert r.status_code == 400 and "refused" in r.text and "no such user" in r.text
    world.runner.down = True
    r = await launch(alice)
    assert r.status_code == 503 and "no command node answers" in r.text


async def test_bob_cannot_see_read_or_cancel_alices_session(world: World, alice: httpx.AsyncClient,
                                                             bob: httpx.AsyncClient):
    await launch(alice)
    (job,) = world.feed.all()
    world.runner.logs[job.job_id] = "alice's secret output"
    assert job.job_id not in (await bob.get("/sessions")).text
    for url in (f"/sessions/{job.job_id}", f"/sessions/{job.job_id}/log"):
        assert (await bob.get(url)).status_code == 404, url
    bob_token = csrf_of((await bob.get("/apps")).text)
    r = await bob.post(f"/sessions/{job.job_id}/cancel", data={"csrf": bob_token})
    assert r.status_code == 404 and not world.feed.get(job.job_id).cancel_requested
    assert (await alice.get(f"/sessions/{job.job_id}/log")).text == "alice's secret output"


async def test_connect_sends_only_the_owner_to_the_app_with_its_secret(
        world: World, alice: httpx.AsyncClient, bob: httpx.AsyncClient):
    await launch(alice)
    (job,) = world.feed.all()
    url = f"/sessions/{job.job_id}/connect"
    token = csrf_of((await alice.get("/sessions")).text)
    assert (await alice.post(url, data={"csrf": token})).status_code == 404, "nothing to connect to yet"
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    await world.store.append([ev.JobStarted(job_id=job.job_id, nodes=["cn0"]),
                              ev.PortsForwarded(job_id=job.job_id, gateway="gw0", forwards=fwd),
                              ev.PortOpen(job_id=job.job_id, external_port=21001)])
    await world.feed.wait_for(job.job_id, lambda j: j.state == "available", 2)
    page = (await alice.get("/sessions")).text
    assert url in page and secret_of(job.job_id) not in page, "the card has Connect, not the secret"
    r = await alice.post(url, data={"csrf": token})
    assert r.status_code == 303 and r.headers["cache-control"] == "no-store"
    assert r.headers["location"] == (
        f"http://192.0.2.30:21001/index.html?autoconnect=true&password={secret_of(job.job_id)}")
    r = await bob.post(url, data={"csrf": csrf_of((await bob.get("/apps")).text)})
    assert r.status_code == 404 and secret_of(job.job_id) not in r.text


async def test_alice_cancels_her_session(world: World, alice: httpx.AsyncClient):
    await launch(alice)
    (job,) = world.feed.all()
    page = await alice.get("/sessions")
    r = await alice.post(f"/sessions/{job.job_id}/cancel", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    assert world.feed.get(job.job_id).cancel_requested
    assert "Cancelling…" in (await alice.get("/sessions")).text


async def test_the_session_page_shows_the_log_or_why_it_cannot(world: World, alice: httpx.AsyncClient):
    await launch(alice)
    (job,) = world.feed.all()
    world.runner.logs[job.job_id] = "xpra: starting\nready"
    page = await alice.get(f"/sessions/{job.job_id}")
    assert page.status_code == 200 and "xpra: starting" in page.text
    world.runner.down = True
    page = await alice.get(f"/sessions/{job.job_id}")
    assert page.status_code == 200 and "The log cannot be read right now" in page.text
    assert (await alice.get(f"/sessions/{job.job_id}/log")).status_code == 503


async def test_the_live_stream_sends_the_card_again_when_the_job_changes(world: World):
    job_id = await world.runner.submit("alice", "xpra-desktop", LAUNCH)
    await world.runner.submit("bob", "xpra-desktop", LAUNCH)
    stream = live_cards(world.portal, "alice", "token", keepalive=5)
    assert await anext(stream) == "retry: 2000\n\n"
    first = json.loads((await anext(stream)).split("data: ", 1)[1])
    assert [c["id"] for c in first["cards"]] == [job_id] and first["cards"][0]["state"] == "submitted"
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)  # a span in which nothing may come: there is no event to wait on
    assert not pending.done(), "nothing changed, nothing sent"
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    await world.store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                              ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=fwd),
                              ev.PortOpen(job_id=job_id, external_port=21001)])
    message = await asyncio.wait_for(pending, 2)
    while '"available"' not in message:
        message = await asyncio.wait_for(anext(stream), 2)
    card = json.loads(message.split("data: ", 1)[1])["cards"][0]
    assert 'action="/sessions/' + job_id + '/connect"' in card["html"]
    assert "21001" not in card["html"] and secret_of(job_id) not in card["html"]
    assert 'name="csrf" value="token"' in card["html"]
    await stream.aclose()


async def test_the_events_endpoint_needs_a_login(world: World):
    async with world.client() as client:
        assert (await client.get("/sessions/events")).status_code == 401


async def test_the_admin_page_is_for_the_admin_group(world: World, alice: httpx.AsyncClient):
    assert (await alice.get("/admin")).status_code == 403
    await launch(alice)
    (job,) = world.feed.all()
    fwd = [ev.Forward(internal_port=20001, external_port=21001)]
    await world.store.append([ev.JobStarted(job_id=job.job_id, nodes=["cn0"]),
                              ev.PortsForwarded(job_id=job.job_id, gateway="gw0", forwards=fwd)])
    assert await world.feed.wait_for(job.job_id, lambda j: bool(j.services), 2.0)
    async with world.client() as carol:
        await login(carol, "carol")
        page = await carol.get("/admin")
        assert page.status_code == 200 and job.job_id in page.text and "alice" in page.text
        assert "<td>1 (0)</td>" in page.text, "gw0 has one forward, not answering yet"
        assert "up (sshd answers)" in page.text and "down (no answer)" in page.text
        assert "<td>unknown</td>" in page.text, "no heartbeats followed"
        beats = GatewayHeartbeats(timeout=5)
        world.portal.beats = beats
        assert "never heard from" in (await carol.get("/admin")).text
        beats.beat("gw0", 2)
        assert "alive (2 rules)" in (await carol.get("/admin")).text
        beats.beat("gw0", 2, at=time.monotonic() - 30)
        assert "silent for 30 s" in (await carol.get("/admin")).text


@pytest.mark.parametrize(("proxies", "allowed"), [(["127.0.0.1/32"], True), (["10.9.9.9"], False)])
async def test_the_sso_header_is_believed_only_from_trusted_proxies(world: World, proxies, allowed):
    world.portal.authenticator = None
    world.portal.header_auth = TrustedHeaderAuthenticator("X-Remote-User", proxies)
    async with world.client() as client:  # httpx's ASGI transport comes from 127.0.0.1
        r = await client.get("/sessions", headers={"X-Remote-User": "alice"})
        assert r.status_code == (200 if allowed else 403)
        if allowed:
            # The header names the user on every request; the session follows it.
            r = await client.get("/sessions", headers={"X-Remote-User": "bob"})
            assert r.status_code == 200 and ">bob<" in r.text
            assert (await client.get("/sessions")).status_code == 403


async def test_forms_may_lead_only_here_and_to_the_gateways(alice: httpx.AsyncClient):
    # Connect's answer redirects to a gateway; CSP's form-action governs that redirect too.
    csp = (await alice.get("/sessions")).headers["content-security-policy"]
    assert "form-action 'self' http://192.0.2.30:* https://192.0.2.30:*;" in csp


async def test_healthz_answers_without_login_and_says_when_the_process_is_not_sound(world: World):
    sound = [True]
    app = create_app(world.portal, SECRET, ready=lambda: sound[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as client:
        r = await client.get("/healthz")
        assert r.status_code == 200 and r.text == "ok"
        sound[0] = False  # stopping, or a task it needs died
        r = await client.get("/healthz")
    assert r.status_code == 503 and r.text == "unavailable"
