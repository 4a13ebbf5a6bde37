"""Session cards: state in plain words, why it waits, time left, where to connect, ageing out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from bwvisu_common.projections import JobView, Service
from tests.unit.web.conftest import xpra_bundle
from web_portal.domain.sessions import card, sessions_of

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def job(**kw: object) -> JobView:
    base: dict[str, object] = {"job_id": "j1", "uid": "alice", "template_name": "xpra-desktop",
                               "variables": {"runtime": "90"}, "submitted_at": NOW - timedelta(minutes=10),
                               "updated_at": NOW - timedelta(minutes=1)}
    return JobView(**{**base, **kw})  # type: ignore[arg-type]


def test_a_queued_job_says_why_it_waits_in_words():
    c = card(job(details="waiting: Resources"), xpra_bundle(), NOW)
    assert c.words == "Waiting in the queue" and "nodes it needs are busy" in c.why
    assert c.time_left == "Runs for 1 h 30 min once started" and c.can_cancel and not c.can_connect
    assert "QOSOdd" in card(job(details="waiting: QOSOdd"), xpra_bundle(), NOW).why


def test_a_running_job_counts_down_from_its_start():
    started = NOW - timedelta(minutes=20)
    c = card(job(state="running", details="running", started_at=started), xpra_bundle(), NOW)
    assert c.words == "Starting…" and c.time_left == "1 h 10 min left"
    assert c.ends_at == (started + timedelta(minutes=90)).isoformat()
    # Start not known (an adopted job): the submission time, so never more time than there is.
    assert card(job(state="running"), xpra_bundle(), NOW).time_left == "1 h 20 min left"


def test_an_available_job_can_connect_but_its_card_holds_no_url():
    services = [Service(internal_port=20001, external_port=21001, gateway="gw0", open=True)]
    c = card(job(state="available", services=services), xpra_bundle(), NOW)
    assert c.words == "Ready" and c.can_connect
    assert "21001" not in msgspec.json.encode(c).decode(), "the URL (with its secret) comes on Connect only"
    assert not card(job(state="running", services=services), xpra_bundle(), NOW).can_connect


def test_how_a_job_ended_is_told():
    b = xpra_bundle()
    cancelled = card(job(state="finished", cancel_requested=True, exit_code=143), b, NOW)
    assert cancelled.words == "Cancelled" and cancelled.why == "", "Slurm's signal is no error"
    refused = job(state="finished", failure="rejected", details="submission failed: bad partition")
    failed = card(refused, b, NOW)
    assert failed.words == "Could not start" and failed.why == "bad partition" and not failed.can_cancel
    crashed = card(job(state="finished", exit_code=3), b, NOW)
    assert crashed.words == "Ended with an error" and "Exit code 3" in crashed.why
    assert card(job(state="finished", exit_code=0), b, NOW).words == "Finished"
    assert card(job(cancel_requested=True), b, NOW).words == "Cancelling…"


def test_a_failed_submission_shows_no_internal_hosts():
    down = job(state="finished", failure="unavailable",
               details="submission failed: the cluster cannot be reached: login0 (10.200.0.10): refused")
    refused = job(state="finished", failure="rejected", details="submission failed: sbatch refused the job: "
                  "sbatch: error: Batch job submission failed: Invalid account on 10.200.0.1")
    assert card(down, None, NOW).why == "the cluster cannot be reached right now; try again later"
    assert card(refused, None, NOW).why == "the scheduler refused the job: Invalid account on <address>"


def test_finished_sessions_age_out_and_users_see_only_their_own():
    jobs = [job(job_id="old", state="finished", updated_at=NOW - timedelta(minutes=61)),
            job(job_id="recent", state="finished", updated_at=NOW - timedelta(minutes=59)),
            job(job_id="live", submitted_at=NOW - timedelta(minutes=2)), job(job_id="bobs", uid="bob")]
    assert [j.job_id for j in sessions_of(jobs, "alice", NOW, 60)] == ["live", "recent"], "newest first"
    assert {j.job_id for j in sessions_of(jobs, None, NOW, 60)} == {"recent", "live", "bobs"}


def test_an_unknown_template_still_gets_a_card():
    c = card(job(template_name="gone"), None, NOW)
    assert c.app == "gone" and c.icon == "app" and c.time_left == ""
