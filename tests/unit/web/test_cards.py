"""Session cards: state in plain words, why it waits, time left, where to connect, ageing out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from bwvisu_common.idle import IdlePolicy
from bwvisu_common.job_facts import FailureKind, JobState, Why, WhyKind
from bwvisu_common.read_model import JobView, Service
from tests.unit.web.conftest import xpra_bundle
from web_portal.domain.sessions import card, sessions_of

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
RUNNING, AVAILABLE, FINISHED = JobState.RUNNING, JobState.AVAILABLE, JobState.FINISHED


def job(**kw: object) -> JobView:
    base: dict[str, object] = {"job_id": "j1", "uid": "alice", "template_name": "xpra-desktop",
                               "variables": {"runtime": "90"}, "submitted_at": NOW - timedelta(minutes=10),
                               "updated_at": NOW - timedelta(minutes=1)}
    return JobView(**{**base, **kw})  # type: ignore[arg-type]


def test_a_queued_job_says_why_it_waits_in_words():
    c = card(job(why=Why(WhyKind.QUEUED_WAITING, "Resources")), xpra_bundle(), NOW)
    assert c.words == "Waiting in the queue" and "nodes it needs are busy" in c.why
    assert c.time_left == "Runs for 1 h 30 min once started" and c.can_cancel and not c.can_connect
    assert "QOSOdd" in card(job(why=Why(WhyKind.QUEUED_WAITING, "QOSOdd")), xpra_bundle(), NOW).why
    assert card(job(why=Why(WhyKind.QUEUED_WAITING)), xpra_bundle(), NOW).why == "", "Slurm gave no reason"


def test_a_running_job_counts_down_from_its_start():
    started = NOW - timedelta(minutes=20)
    c = card(job(state=RUNNING, why=Why(WhyKind.RUNNING), started_at=started), xpra_bundle(), NOW)
    assert c.words == "Starting…" and c.time_left == "1 h 10 min left"
    assert c.ends_at == (started + timedelta(minutes=90)).isoformat()
    # Start not known (an adopted job): the submission time, so never more time than there is.
    assert card(job(state=RUNNING), xpra_bundle(), NOW).time_left == "1 h 20 min left"


def test_an_available_job_can_connect_but_its_card_holds_no_url():
    services = [Service(internal_port=20001, external_port=21001, gateway="gw0", open=True)]
    c = card(job(state=AVAILABLE, services=services), xpra_bundle(), NOW)
    assert c.words == "Ready" and c.can_connect
    assert "21001" not in msgspec.json.encode(c).decode(), "the URL (with its secret) comes on Connect only"
    assert not card(job(state=RUNNING, services=services), xpra_bundle(), NOW).can_connect


def test_how_a_job_ended_is_told():
    b = xpra_bundle()
    cancelled = card(job(state=FINISHED, cancel_requested=True, exit_code=143), b, NOW)
    assert cancelled.words == "Cancelled" and cancelled.why == "", "Slurm's signal is no error"
    refused = job(state=FINISHED, failure=FailureKind.REJECTED,
                  why=Why(WhyKind.SUBMIT_FAILED, "bad partition"))
    failed = card(refused, b, NOW)
    assert failed.words == "Could not start" and failed.why == "bad partition" and not failed.can_cancel
    crashed = card(job(state=FINISHED, exit_code=3), b, NOW)
    assert crashed.words == "Ended with an error" and "Exit code 3" in crashed.why
    assert card(job(state=FINISHED, exit_code=0), b, NOW).words == "Finished"
    assert card(job(cancel_requested=True), b, NOW).words == "Cancelling…"


def test_a_failed_submission_shows_no_internal_hosts():
    down = job(state=FINISHED, failure=FailureKind.UNAVAILABLE, why=Why(
        WhyKind.SUBMIT_FAILED, "the cluster cannot be reached: login0 (10.200.0.10): refused"))
    refused = job(state=FINISHED, failure=FailureKind.REJECTED, why=Why(
        WhyKind.SUBMIT_FAILED, "sbatch refused the job: "
        "sbatch: error: Batch job submission failed: Invalid account on 10.200.0.1"))
    assert card(down, None, NOW).why == "the cluster cannot be reached right now; try again later"
    assert card(refused, None, NOW).why == "the scheduler refused the job: Invalid account on <address>"


def test_finished_sessions_age_out_and_users_see_only_their_own():
    jobs = [job(job_id="old", state=FINISHED, updated_at=NOW - timedelta(minutes=61)),
            job(job_id="recent", state=FINISHED, updated_at=NOW - timedelta(minutes=59)),
            job(job_id="live", submitted_at=NOW - timedelta(minutes=2)), job(job_id="bobs", uid="bob")]
    assert [j.job_id for j in sessions_of(jobs, "alice", NOW, 60)] == ["live", "recent"], "newest first"
    assert {j.job_id for j in sessions_of(jobs, None, NOW, 60)} == {"recent", "live", "bobs"}


def test_an_unknown_template_still_gets_a_card():
    c = card(job(template_name="gone"), None, NOW)
    assert c.app == "gone" and c.icon == "app" and c.time_left == ""


SILENT = "The cluster's scheduler does not answer at the moment; this may be out of date."


@pytest.mark.parametrize(("state", "why", "shown"), [
    (JobState.SUBMITTED, Why(WhyKind.QUEUED, "100"), ""),
    (JobState.SUBMITTED, Why(WhyKind.ADOPTED, "100"), ""),
    (JobState.SUBMITTED, Why(WhyKind.QUEUED_WAITING, "Priority"), "Slurm says: other jobs are ahead of it."),
    (JobState.SUBMITTED, Why(WhyKind.SCHEDULER_UNREACHABLE, "ssh: login0 refused"), SILENT),
    (RUNNING, Why(WhyKind.SCHEDULER_UNREACHABLE, "ssh: login0 refused"), SILENT),
    (RUNNING, Why(WhyKind.RUNNING), ""),
    (RUNNING, Why(WhyKind.SUSPENDED), ""),
    (RUNNING, Why(WhyKind.SLURM_STATE_UNKNOWN, "WEIRD"), ""),
    (RUNNING, Why(WhyKind.CANCEL_REQUESTED), ""),
    (RUNNING, Why(WhyKind.CANCEL_FAILED, "scancel: error"), ""),
    (RUNNING, Why(WhyKind.PORTS_REQUESTED), ""),
    (RUNNING, Why(WhyKind.PORTS_REFUSED, "second request"), "port request refused: second request"),
    (RUNNING, Why(WhyKind.APP_STARTING), ""),
    (AVAILABLE, Why(WhyKind.APP_LISTENING), ""),
    (JobState.COMPLETING, Why(WhyKind.COMPLETING), ""),
    (FINISHED, Why(WhyKind.ENDED, "COMPLETED"), ""),
    (FINISHED, Why(WhyKind.SUBMIT_FAILED, "no such user: carol"), "no such user: carol"),
    (JobState.SUBMITTED, Why(WhyKind.NONE, "an older version's words"), ""),
])
def test_each_kind_of_reason_in_words(state: JobState, why: Why, shown: str) -> None:
    failure = FailureKind.UNKNOWN_USER if why.kind is WhyKind.SUBMIT_FAILED else FailureKind.NONE
    assert card(job(state=state, why=why, failure=failure), xpra_bundle(), NOW).why == shown


def test_a_card_decides_on_the_typed_reason_not_on_its_words():
    said = job(state=FINISHED, why=Why(WhyKind.ENDED, "COMPLETED"), details="submission failed: made up")
    assert card(said, xpra_bundle(), NOW).words == "Finished"
    waiting = job(why=Why(WhyKind.QUEUED, "7"), details="waiting: Resources")
    assert card(waiting, xpra_bundle(), NOW).why == ""


def test_a_card_in_trouble_is_told_apart_from_one_making_progress():
    b = xpra_bundle()
    troubled = [job(state=FINISHED, failure=FailureKind.REJECTED, why=Why(WhyKind.SUBMIT_FAILED, "bad")),
                job(state=FINISHED, exit_code=3),
                job(state=RUNNING, why=Why(WhyKind.SCHEDULER_UNREACHABLE, "ssh: refused")),
                job(state=RUNNING, why=Why(WhyKind.PORTS_REFUSED, "second request"))]
    fine = [job(why=Why(WhyKind.QUEUED_WAITING, "Resources")), job(state=RUNNING), job(state=AVAILABLE),
            job(state=FINISHED, exit_code=0), job(state=FINISHED, cancel_requested=True, exit_code=143),
            job(cancel_requested=True)]
    assert [card(j, b, NOW).trouble for j in troubled] == [True] * len(troubled)
    assert [card(j, b, NOW).trouble for j in fine] == [False] * len(fine)


def test_an_idle_session_says_so_and_is_warned_before_the_site_ends_it():
    services = [Service(internal_port=20001, external_port=21001, gateway="gw0", open=True)]
    opened = job(state=AVAILABLE, services=services, available_at=NOW - timedelta(minutes=25))
    assert card(opened, xpra_bundle(), NOW).idle == "idle for 25 min"
    assert card(opened, xpra_bundle(), NOW).idle_warning == "", "no idle-timeout: no warning"
    fresh = msgspec.structs.replace(opened, last_activity=NOW - timedelta(seconds=30))
    assert card(fresh, xpra_bundle(), NOW).idle == "", "under a minute is not idle"
    policy = IdlePolicy(timeout_minutes=30, warning_minutes=10)
    warned = card(opened, xpra_bundle(), NOW, policy)
    assert warned.idle_warning == "will be ended in 5 min for inactivity"
    assert card(opened, xpra_bundle(), NOW - timedelta(minutes=6), policy).idle_warning == ""
    ended = job(state=FINISHED, cancel_requested=True, cancel_reason="idle", exit_code=0)
    c = card(ended, xpra_bundle(), NOW, policy)
    assert c.words == "Cancelled (idle)" and "idle" in c.why and c.idle == ""
