"""The admin pages: sessions filtered and paged, each linked to its event history; admins only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bwvisu_common import events as ev
from bwvisu_common.errors import InvalidInput
from bwvisu_common.job_lists import JobFilter
from tests.unit.web.conftest import World, login
from web_portal.domain.admin_list import AdminQuery, history_url, page_url, parse_query

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
FWD = [ev.Forward(internal_port=20001, external_port=21001)]
ROW = re.compile(r'href="/admin/jobs/([^"]+)" data-testid="history-link"')


async def add_jobs(world: World, count: int, uid: str = "alice", gateway: str = "") -> list[str]:
    """`count` jobs of `uid`, one minute apart, the later ones newer; forwarded by `gateway` if given."""
    ids = []
    for n in range(count):
        job_id = f"{uid}-{n:04d}"
        await world.store.append([
            ev.JobSubmitted(job_id=job_id, uid=uid, template_name="xpra-desktop",
                            variables={"runtime": "30"}, time=T0 + timedelta(minutes=n)),
            ev.JobQueued(job_id=job_id, slurm_id=str(1000 + n), command_node="login0"),
        ])
        if gateway:
            await world.store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                                      ev.PortsForwarded(job_id=job_id, gateway=gateway, forwards=FWD)])
        ids.append(job_id)
    assert await world.feed.wait_for(ids[-1], lambda j: bool(j.slurm_id) and (j.gateway or not gateway), 2.0)
    return ids


@pytest.fixture
async def carol(world: World):
    async with world.client() as client:
        assert (await login(client, "carol")).status_code == 303
        yield client


def rows(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return ROW.findall(page.text)


async def test_non_admins_get_403_on_every_admin_page(world: World, alice: httpx.AsyncClient):
    (job_id,) = await add_jobs(world, 1)
    for url in ("/admin", "/admin?user=alice&page=2", f"/admin/jobs/{job_id}", "/admin/jobs/no-such-job"):
        r = await alice.get(url)
        assert r.status_code == 403, url
        assert job_id not in r.text and "bwvisu-admin" in r.text


async def test_without_a_login_the_admin_pages_lead_to_the_login(world: World):
    async with world.client() as client:
        for url in ("/admin", "/admin/jobs/x"):
            r = await client.get(url)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


async def test_sessions_come_a_page_at_a_time_newest_first(world: World, carol: httpx.AsyncClient):
    ids = await add_jobs(world, 120)
    first = await carol.get("/admin")
    assert rows(first) == list(reversed(ids))[:50]
    assert "Page 1 of 3 · 120 sessions" in first.text
    assert 'href="/admin?page=2" rel="next"' in first.text and 'rel="prev"' not in first.text
    last = await carol.get("/admin?page=3")
    assert rows(last) == list(reversed(ids))[100:]
    assert 'href="/admin?page=2" rel="prev"' in last.text and 'rel="next"' not in last.text
    assert rows(await carol.get("/admin?page=nonsense")) == rows(first)


async def test_filters_by_user_state_and_gateway_and_pages_keep_the_filter(world: World, carol):
    alice_ids = await add_jobs(world, 60, "alice", gateway="gw0")
    bob_ids = await add_jobs(world, 3, "bob")
    await world.store.append([ev.JobEnded(job_id=bob_ids[0], slurm_state="COMPLETED", exit_code=0)])
    assert await world.feed.wait_for(bob_ids[0], lambda j: j.state == "finished", 2.0)
    assert rows(await carol.get("/admin?user=bob")) == list(reversed(bob_ids))
    assert rows(await carol.get("/admin?user=bob&state=finished")) == [bob_ids[0]]
    assert rows(await carol.get("/admin?user=bob&state=submitted")) == list(reversed(bob_ids[1:]))
    on_gw0 = await carol.get("/admin?gateway=gw0&state=running")
    assert rows(on_gw0) == list(reversed(alice_ids))[:50]
    assert 'href="/admin?state=running&amp;gateway=gw0&amp;page=2" rel="next"' in on_gw0.text
    assert '<option value="gw0" selected>' in on_gw0.text
    assert '<option value="running" selected>' in on_gw0.text
    assert rows(await carol.get("/admin?gateway=gw0&state=running&page=2")) == list(reversed(alice_ids))[50:]
    assert rows(await carol.get("/admin?gateway=gw9")) == []
    r = await carol.get("/admin?state=runing")
    assert r.status_code == 400 and "expected one of submitted" in r.text


async def test_a_row_links_to_the_jobs_events_in_order_with_their_times(world: World, carol):
    (job_id,) = await add_jobs(world, 1, gateway="gw0")
    await world.store.append([ev.PortOpen(job_id=job_id, external_port=21001, gateway="gw0"),
                              ev.JobCancelRequested(job_id=job_id),
                              ev.JobEnded(job_id=job_id, slurm_state="CANCELLED", exit_code=0)])
    assert await world.feed.wait_for(job_id, lambda j: j.state == "finished", 2.0)
    assert rows(await carol.get("/admin")) == [job_id]
    page = await carol.get(f"/admin/jobs/{job_id}")
    assert page.status_code == 200
    kinds = re.findall(r"<td>(Job\w+|Ports\w+|Port\w+)</td>", page.text)
    assert kinds == ["JobSubmitted", "JobQueued", "JobStarted", "PortsForwarded", "PortOpen",
                     "JobCancelRequested", "JobEnded"]
    assert "<td>2026-11-29 09:00:00.000</td>" in page.text, "the submission's own time"
    assert "1000 (via login0)" in page.text and "<td>gw0</td>" in page.text and "<td>cn0</td>" in page.text
    assert "gw0 forwards 21001-&gt;20001" in page.text
    assert "ended: CANCELLED, exit code 0 after a cancel request" in page.text
    assert "secret" not in page.text.lower()


async def test_an_unknown_or_malformed_job_is_not_found(carol: httpx.AsyncClient):
    for job_id in ("nothing-here", "a.b", "*"):
        assert (await carol.get(f"/admin/jobs/{job_id}")).status_code == 404, job_id


def test_the_query_string_becomes_a_filter_and_links_keep_it():
    query = parse_query(" alice ", "running", "gw0", "3")
    assert query == AdminQuery(JobFilter(user="alice", state="running", gateway="gw0"), 3)
    assert parse_query(page="-2").page == 1 and parse_query(page="x").page == 1
    assert parse_query(user="u" * 500).wanted.user == "u" * 64
    assert page_url(JobFilter(), 1) == "/admin"
    assert page_url(JobFilter(user="a b&c"), 2) == "/admin?user=a+b%26c&page=2"
    assert history_url("j/1") == "/admin/jobs/j%2F1"
    with pytest.raises(InvalidInput):
        parse_query(state="gone")


async def test_sessions_sort_by_idle_time_longest_first_and_pages_keep_the_order(world: World, carol):
    ids = await add_jobs(world, 4, gateway="gw0")
    now = datetime.now(UTC)
    # ids[0] and ids[2] answer; ids[2] long ago without traffic since, ids[0] with traffic just now.
    for job_id, opened in ((ids[0], now - timedelta(minutes=50)), (ids[2], now - timedelta(minutes=40))):
        await world.store.append([ev.PortOpen(job_id=job_id, external_port=21001, gateway="gw0",
                                              time=opened)])
    await world.store.append([ev.SessionActivity(job_id=ids[0], gateway="gw0",
                                                 last_activity=now - timedelta(minutes=3))])
    assert await world.feed.wait_for(ids[0], lambda j: j.last_activity is not None, 2.0)
    page = await carol.get("/admin?sort=idle")
    # The idle ones first, longest first; then those never idle, newest first.
    assert rows(page) == [ids[2], ids[0], ids[3], ids[1]]
    assert "idle for 40 min" in page.text and "idle for 3 min" in page.text
    assert rows(await carol.get("/admin")) == list(reversed(ids)), "newest first by default"
    assert 'href="/admin?sort=idle"' in (await carol.get("/admin")).text
    assert page_url(JobFilter(user="a"), 2, "idle") == "/admin?user=a&sort=idle&page=2"
    assert parse_query(sort="nonsense").order == ""
