"""Only what can run is offered: a bundle's needs, the portal's verdict on each app, the refused
launch, and the cluster's facts as runner-api serves them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.needs import ClusterFacts, Fit, Needs
from runner_api.app import create_app as create_runner_api
from runner_api.handlers import Jobs
from tests.fakes.cluster_facts import FakeClusterFacts
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.job_logs import FakeJobLogs
from tests.fakes.state_store import InMemoryStateStore
from tests.fakes.templates import FakeTemplates
from tests.fakes.users import FakeUserDirectory
from tests.unit.web.conftest import XPRA, World, csrf_of
from web_portal.adapters.runner_api import RunnerApiClient
from web_portal.app_needs import AppNeeds
from web_portal.domain.bundles import parse_bundle
from web_portal.errors import BundleError, RunnerUnavailable

CONTAINER = {**XPRA, "title": "Visualization container", "template": "web-app",
             "needs": {"commands": ["singularity"]}}
LACKING = ClusterFacts(partitions={"debug": []}, commands={"singularity": False, "xpra": True})
REASON = "needs singularity, which this cluster lacks"
PASSWORD = "api-pw"


def bundle_with(needs: object) -> bytes:
    return json.dumps({**XPRA, "needs": needs}).encode()


def test_a_bundle_declares_its_needs() -> None:
    bundle = parse_bundle("c.app.json", bundle_with({"commands": ["singularity"], "gres": ["gpu:a100"],
                                                     "partition": "gpu"}))
    assert bundle.needs == Needs(commands=["singularity"], gres=["gpu:a100"], partition="gpu")
    assert parse_bundle("d.app.json", json.dumps(XPRA).encode()).needs == Needs()


@pytest.mark.parametrize(("needs", "field"), [
    ({"commands": ["singularity; reboot"]}, "needs.commands[0]"),
    ({"gres": ["gpu:a100:1"]}, "needs.gres[0]"),
    ({"partition": "a b"}, "needs.partition"),
    ({"command": ["singularity"]}, "needs"),
    ({"commands": "singularity"}, "needs.commands"),
    (["singularity"], "needs"),
])
def test_a_bad_declaration_stops_the_portal_naming_bundle_and_field(needs: object, field: str) -> None:
    with pytest.raises(BundleError) as err:
        parse_bundle("container.app.json", bundle_with(needs))
    assert err.value.file == "container.app.json" and err.value.field == field, str(err.value)
    assert str(err.value).startswith(f"app bundle container.app.json: {field}: ")


@pytest.fixture
def facts(world: World) -> FakeClusterFacts:
    world.portal.bundles["xpra-singularity"] = parse_bundle("xpra-singularity.app.json",
                                                            json.dumps(CONTAINER).encode())
    source = FakeClusterFacts(LACKING)
    world.portal.app_needs = AppNeeds(source)
    return source


async def test_the_app_the_cluster_cannot_run_is_greyed_out_with_the_reason(
        facts: FakeClusterFacts, alice: httpx.AsyncClient) -> None:
    page = (await alice.get("/apps")).text
    container = page.split('data-testid="app-xpra-singularity"', 1)[1].split("</article>", 1)[0]
    assert '<article class="app unavailable" data-testid="app-xpra-singularity">' in page
    assert f"Not available here: it {REASON}." in container
    assert '<button type="button" disabled aria-describedby="why-xpra-singularity">' in container
    assert 'href="/apps/xpra-singularity"' not in page, "no way to start it from the list"
    assert 'data-testid="launch-xpra-desktop"' in page, "the app that needs nothing stays offered"


async def test_its_form_says_why_and_offers_no_start(
        facts: FakeClusterFacts, alice: httpx.AsyncClient) -> None:
    page = await alice.get("/apps/xpra-singularity")
    assert page.status_code == 200
    assert f"This application cannot run on this cluster: it {REASON}." in page.text
    assert 'data-testid="start" disabled' in page.text


async def test_a_launch_is_refused_on_the_server_with_the_reason(
        world: World, facts: FakeClusterFacts, alice: httpx.AsyncClient) -> None:
    form = await alice.get("/apps/xpra-desktop")
    r = await alice.post("/apps/xpra-singularity", data={"csrf": csrf_of(form.text), "runtime": "60",
                                                         "cores": "1", "partition": "debug"})
    assert r.status_code == 409 and REASON in r.text
    assert world.feed.all() == [] and await world.store.last_seq() == 0, "nothing was submitted"


async def test_an_app_whose_needs_could_not_be_checked_stays_offered_and_says_so(
        world: World, facts: FakeClusterFacts, alice: httpx.AsyncClient) -> None:
    facts.down = True
    page = (await alice.get("/apps")).text
    assert 'data-testid="launch-xpra-singularity"' in page
    assert "Could not check whether this cluster has singularity." in page
    form = await alice.get("/apps/xpra-singularity")
    assert 'data-testid="start" disabled' not in form.text and "Could not check" in form.text
    r = await alice.post("/apps/xpra-singularity", data={"csrf": csrf_of(form.text), "runtime": "60",
                                                         "cores": "1", "partition": "debug"})
    assert r.status_code == 303, "not checked is not refused"


async def test_an_app_the_cluster_can_run_is_offered_plainly(
        facts: FakeClusterFacts, alice: httpx.AsyncClient) -> None:
    facts.facts_ = ClusterFacts(partitions={"debug": []}, commands={"singularity": True})
    page = (await alice.get("/apps")).text
    assert 'data-testid="launch-xpra-singularity"' in page and 'data-testid="needs-' not in page


async def test_the_facts_are_asked_once_for_many_pages_and_again_later(facts: FakeClusterFacts) -> None:
    now = [0.0]
    needs = AppNeeds(facts, kept_for=30, clock=lambda: now[0])
    bundle = parse_bundle("c.app.json", json.dumps(CONTAINER).encode())
    for _ in range(5):
        assert (await needs.verdict(bundle)).fit is Fit.LACKS
    assert facts.asked == 1
    now[0] = 31
    facts.facts_ = ClusterFacts(partitions={}, commands={"singularity": True})
    assert (await needs.verdict(bundle)).fit is Fit.RUNS and facts.asked == 2


async def test_a_bundle_without_needs_asks_nobody(facts: FakeClusterFacts) -> None:
    needs = AppNeeds(facts)
    assert (await needs.verdict(parse_bundle("d.app.json", json.dumps(XPRA).encode()))).fit is Fit.RUNS
    assert facts.asked == 0


# --- the facts through runner-api's HTTP API, as the portal reads them --------------------


@pytest.fixture
async def api(facts: FakeClusterFacts) -> AsyncIterator[RunnerApiClient]:
    store = InMemoryEventStore()
    live = LiveJobs(store, InMemoryStateStore())
    jobs = Jobs(store, live, FakeUserDirectory({"alice"}), FakeTemplates({"xpra-desktop": "#!/bin/sh\n"}),
                FakeJobLogs())
    app = create_runner_api(jobs, {}, "bwvisu-web", PASSWORD, cluster_facts=facts)
    client = RunnerApiClient("http://runner-api", "bwvisu-web", PASSWORD,
                             transport=httpx.ASGITransport(app=app))
    yield client
    await client.aclose()


@pytest.mark.parametrize("facts_", [
    LACKING,
    ClusterFacts(slurm_error="sinfo: timed out", commands_error="no command node answered",
                 commands_source="login-node"),
    ClusterFacts(partitions={"gpu": ["gpu", "gpu:a100"]}, slurm_checked_at=1.5e9, commands={},
                 commands_source="site-list"),
])
async def test_runner_api_passes_the_facts_on_unchanged(
        api: RunnerApiClient, facts: FakeClusterFacts, facts_: ClusterFacts) -> None:
    facts.facts_ = facts_
    assert await api.cluster_facts() == await facts.cluster_facts()


async def test_nobody_to_ask_is_unavailable_through_runner_api_too(
        api: RunnerApiClient, facts: FakeClusterFacts) -> None:
    facts.down = True
    with pytest.raises(RunnerUnavailable):
        await api.cluster_facts()
    with pytest.raises(RunnerUnavailable):
        await facts.cluster_facts()


async def test_the_answer_is_kebab_json_with_null_for_not_checked(facts: FakeClusterFacts) -> None:
    store = InMemoryEventStore()
    jobs = Jobs(store, LiveJobs(store, InMemoryStateStore()), FakeUserDirectory(set()), FakeTemplates({}),
                FakeJobLogs())
    facts.facts_ = ClusterFacts(partitions={"debug": []}, commands_error="no command node answered")
    app = create_runner_api(jobs, {}, "bwvisu-web", PASSWORD, cluster_facts=facts)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        assert (await http.get("/apps/requirements")).status_code == 401
        body = (await http.get("/apps/requirements", auth=("bwvisu-web", PASSWORD))).json()
    assert body["partitions"] == {"debug": []} and body["commands"] is None
    assert body["commands-error"] == "no command node answered"
