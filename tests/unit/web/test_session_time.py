"""Time running out, Extend and Launch again: on the cards, and through the portal's HTTP edge."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView
from tests.unit.web.conftest import World, csrf_of, xpra_bundle
from web_portal.domain.forms import initial_values
from web_portal.domain.sessions import card

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TEN = timedelta(minutes=10)


def job(**kw: object) -> JobView:
    base: dict[str, object] = {
        "job_id": "j1", "uid": "alice", "template_name": "xpra-desktop", "variables": {"runtime": "60"},
        "state": JobState.AVAILABLE, "slurm_id": "4711", "submitted_at": NOW - timedelta(minutes=60),
        "started_at": NOW - timedelta(minutes=55), "updated_at": NOW - timedelta(minutes=1)}
    return JobView(**{**base, **kw})  # type: ignore[arg-type]


def test_a_session_warns_within_the_warning_time_before_its_end() -> None:
    near = card(job(), xpra_bundle(), NOW, warning=TEN)
    assert near.ending_soon and near.time_left == "5 min left" and near.warn_seconds == 600
    far = card(job(started_at=NOW - timedelta(minutes=49)), xpra_bundle(), NOW, warning=TEN)
    assert not far.ending_soon and far.time_left == "11 min left"
    assert card(job(started_at=NOW - timedelta(minutes=49)), xpra_bundle(), NOW,
                warning=timedelta(minutes=12)).ending_soon, "the warning time is the site's"
    assert not card(job(), xpra_bundle(), NOW, warning=timedelta(0)).ending_soon, "0: never"
    for over in (JobState.COMPLETING, JobState.FINISHED, JobState.SUBMITTED):
        assert not card(job(state=over), xpra_bundle(), NOW, warning=TEN).ending_soon, over


def test_the_end_follows_the_time_limit_bwvisu_set() -> None:
    extended = card(job(time_limit=90, extended_minutes=30), xpra_bundle(), NOW, warning=TEN)
    assert extended.time_left == "35 min left" and not extended.ending_soon
    assert extended.ends_at == (NOW - timedelta(minutes=55) + timedelta(minutes=90)).isoformat()


def test_extend_is_offered_only_within_the_sites_maximum_and_only_while_it_runs() -> None:
    bundle = xpra_bundle()
    assert card(job(), bundle, NOW).extend_options == [], "no extensions unless the site allows them"
    assert card(job(), bundle, NOW, max_extension=60).extend_options == [15, 30, 60]
    assert card(job(extended_minutes=20), bundle, NOW, max_extension=60).extend_options == [15, 30]
    assert card(job(extended_minutes=50), bundle, NOW, max_extension=60).extend_options == [10]
    assert card(job(extended_minutes=60), bundle, NOW, max_extension=60).extend_options == []
    assert card(job(extension_pending="r1"), bundle, NOW, max_extension=60).extend_options == []
    for other in ({"state": JobState.SUBMITTED}, {"state": JobState.FINISHED}, {"cancel_requested": True}):
        assert card(job(**other), bundle, NOW, max_extension=60).extend_options == [], other


def test_a_finished_session_launches_again_with_its_values() -> None:
    finished = card(job(state=JobState.FINISHED), xpra_bundle(), NOW)
    assert finished.relaunch_url == "/apps/xpra-desktop?from=j1"
    assert card(job(), xpra_bundle(), NOW).relaunch_url == "", "only once it is over"
    assert card(job(state=JobState.FINISHED), None, NOW).relaunch_url == "", "an app no longer offered"
    values = initial_values(xpra_bundle(), {"runtime": "25", "partition": "gpu", "other": "x"})
    assert values == {"runtime": "25", "cores": "1", "partition": "gpu"}, "the bundle's fields only"
    assert initial_values(xpra_bundle()) == {"runtime": "60", "cores": "1", "partition": "debug"}


async def running(world: World, uid: str = "alice", runtime: str = "30") -> str:
    job_id = await world.runner.submit(uid, "xpra-desktop", {"runtime": runtime, "cores": "2",
                                                             "partition": "gpu"})
    await world.store.append([ev.JobStarted(job_id=job_id, nodes=["cn0"])])
    await world.feed.wait_for(job_id, lambda j: j.state == JobState.RUNNING, 2.0)
    return job_id


async def extend(client: httpx.AsyncClient, job_id: str, minutes: str) -> httpx.Response:
    page = await client.get("/sessions")
    form = {"csrf": csrf_of(page.text), "minutes": minutes}
    return await client.post(f"/sessions/{job_id}/extend", data=form)


async def test_the_owner_extends_on_the_card_and_is_told_why_not_beyond_the_maximum(
        world: World, alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    job_id = await running(world)
    assert 'data-testid="extend"' not in (await alice.get("/sessions")).text, "the site allows none"
    world.portal.max_extension = world.runner.max_extension = 30
    page = (await alice.get("/sessions")).text
    assert 'data-testid="extend"' in page and '<option value="30">30 min</option>' in page
    assert (await extend(bob, job_id, "15")).status_code == 404, "bob cannot extend alice's session"
    r = await extend(alice, job_id, "30")
    assert r.status_code == 303 and r.headers["location"] == f"/sessions#s-{job_id}"
    await world.feed.wait_for(job_id, lambda j: j.extended_minutes == 30, 2.0)
    page = (await alice.get("/sessions")).text
    assert 'data-testid="extend"' not in page, "the maximum is reached"
    r = await extend(alice, job_id, "5")
    assert r.status_code == 409
    assert "The session was not extended: the session was extended by the most" in r.text
    r = await extend(alice, job_id, "lots")
    assert r.status_code == 409 and "Choose how many minutes to add." in r.text


async def test_launch_again_fills_the_form_with_the_owners_own_session_only(
        world: World, alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    fresh = (await alice.get("/apps/xpra-desktop")).text
    assert _value(fresh, "runtime") == "60" and "launch-note" not in fresh, "the defaults at first"
    job_id = await running(world, runtime="25")
    await world.store.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED", exit_code=0)])
    await world.feed.wait_for(job_id, lambda j: j.state == JobState.FINISHED, 2.0)
    sessions = (await alice.get("/sessions")).text
    assert f'href="/apps/xpra-desktop?from={job_id}" data-testid="launch-again"' in sessions
    again = (await alice.get(f"/apps/xpra-desktop?from={job_id}")).text
    assert _value(again, "runtime") == "25" and 'value="gpu" selected' in again
    assert "Filled in with the values of your session of" in again
    last = (await alice.get("/apps/xpra-desktop")).text
    assert _value(last, "runtime") == "25", "the form starts from the values alice used last"
    assert (await bob.get(f"/apps/xpra-desktop?from={job_id}")).status_code == 404
    assert _value((await bob.get("/apps/xpra-desktop")).text, "runtime") == "60", "never another's values"


def _value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" type="number" step="1" value="([^"]*)"', html)
    assert match, f"no input {name}"
    return match.group(1)
