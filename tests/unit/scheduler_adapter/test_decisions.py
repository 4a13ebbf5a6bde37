"""The pure decisions behind scheduler-adapter's handlers: what each answer means for the job's log."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from bwvisu_common import events as ev
from bwvisu_common.read_model import JobView, fold
from bwvisu_common.rpc import CheckUser, CheckUserReply, JobLog, JobLogReply
from bwvisu_common.state_keys import session_secret_key, token_key
from scheduler_adapter.domain.queries import LogRead, check_user_reply, check_user_request, job_log_request
from scheduler_adapter.domain.render import SubmitConfig, render_job, template_name
from scheduler_adapter.domain.secrets import JobSecrets, secrets_to_store, stale_secrets
from scheduler_adapter.domain.submit import (
    SUBMIT_DEADLINE,
    Cancel,
    Submit,
    cancel_failed,
    decide_cancel,
    decide_submit,
    found_earlier,
    submit_failed,
    user_refused,
)
from scheduler_adapter.domain.users import Identity, UserPolicy, user_refusal
from scheduler_adapter.errors import (
    CommandOutcomeUnknown,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRejected,
    TemplateError,
    UnknownUser,
)

FRESH = JobSecrets("f" * 64, "s" * 64)
EARLIER = JobSecrets("e" * 64, "t" * 64)
SUBMITTED = ev.JobSubmitted(job_id="j1", uid="alice", template_name="sleep", variables={"seconds": "5"})


def view_of(*events: ev.Event) -> JobView | None:
    return fold(list(enumerate(events, start=1)))


def test_a_fresh_submission_goes_to_sbatch_with_fresh_secrets() -> None:
    decision = decide_submit(view_of(SUBMITTED), SUBMITTED, earlier=None, fresh=FRESH, now=SUBMITTED.time)
    assert decision == Submit(secrets=FRESH, look_first=False)


def test_a_retry_looks_for_its_earlier_job_first_and_reuses_its_secrets() -> None:
    late = SUBMITTED.time + SUBMIT_DEADLINE * 3  # a retry is never too late: its job may be queued
    decision = decide_submit(view_of(SUBMITTED), SUBMITTED, earlier=EARLIER, fresh=FRESH, now=late)
    assert decision == Submit(secrets=EARLIER, look_first=True)


@pytest.mark.parametrize("later", [
    ev.JobQueued(job_id="j1", slurm_id="7"),
    ev.JobSubmitFailed(job_id="j1", reason="no"),
    ev.JobAdopted(job_id="j1", slurm_id="7", uid="alice"),
])
def test_a_decided_submission_gets_nothing(later: ev.Event) -> None:
    assert decide_submit(view_of(SUBMITTED, later), SUBMITTED, earlier=None, fresh=FRESH,
                         now=SUBMITTED.time) == []
    assert decide_submit(None, SUBMITTED, earlier=None, fresh=FRESH, now=SUBMITTED.time) == []


def test_a_submission_cancelled_before_sbatch_is_refused() -> None:
    view = view_of(SUBMITTED, ev.JobCancelRequested(job_id="j1"))
    [failed] = decide_submit(view, SUBMITTED, earlier=EARLIER, fresh=FRESH, now=SUBMITTED.time)
    assert isinstance(failed, ev.JobSubmitFailed)
    assert (failed.kind, failed.reason) == ("rejected", "cancelled before it was submitted")


def test_a_submission_nobody_acted_on_in_time_is_refused_not_run() -> None:
    now = SUBMITTED.time + SUBMIT_DEADLINE + timedelta(seconds=1)
    [failed] = decide_submit(view_of(SUBMITTED), SUBMITTED, earlier=None, fresh=FRESH, now=now)
    assert isinstance(failed, ev.JobSubmitFailed) and failed.kind == "unavailable"
    in_time = SUBMITTED.time + SUBMIT_DEADLINE - timedelta(seconds=1)
    assert isinstance(decide_submit(view_of(SUBMITTED), SUBMITTED, earlier=None, fresh=FRESH, now=in_time),
                      Submit)


def test_an_earlier_job_found_by_its_tag_is_the_job() -> None:
    assert found_earlier("j1", None) == []
    [queued] = found_earlier("j1", "4711")
    assert isinstance(queued, ev.JobQueued) and queued.slurm_id == "4711"


def test_the_user_gate_verdict() -> None:
    assert user_refused("j1", None) == []
    [failed] = user_refused("j1", "root is the superuser")
    assert isinstance(failed, ev.JobSubmitFailed)
    assert (failed.kind, failed.reason) == ("unknown-user", "root is the superuser")


@pytest.mark.parametrize(("exc", "kind", "reason"), [
    (TemplateError("no such template: x"), "rejected", "no such template: x"),
    (UnknownUser("id failed"), "unknown-user", "no such user: alice"),
    (SubmitRejected("Invalid account"), "rejected", "sbatch refused the job: Invalid account"),
    (SchedulerUnavailable("no node"), "unavailable", "the cluster cannot be reached: no node"),
    (CommandOutcomeUnknown("lost"), "unavailable", "the cluster cannot be reached: lost"),
])
def test_each_submit_failure_has_its_kind(exc: SchedulerError, kind: str, reason: str) -> None:
    failed = submit_failed("j1", "alice", exc)
    assert (failed.job_id, failed.kind, failed.reason) == ("j1", kind, reason)


def test_cancel_asks_slurm_only_about_a_job_it_runs() -> None:
    queued = ev.JobQueued(job_id="j1", slurm_id="7")
    assert decide_cancel(view_of(SUBMITTED, queued)) == Cancel(uid="alice", slurm_id="7")
    assert decide_cancel(None) is None
    assert decide_cancel(view_of(SUBMITTED)) is None  # not in Slurm yet: the submit decision refuses it
    ended = ev.JobEnded(job_id="j1", slurm_state="COMPLETED")
    assert decide_cancel(view_of(SUBMITTED, queued, ended)) is None
    note = cancel_failed("j1", SchedulerError("scancel: Invalid job id"))
    assert note.details == "cancel failed: scancel: Invalid job id"


def test_only_a_job_with_ports_keeps_a_session_secret() -> None:
    assert secrets_to_store("j1", FRESH, has_ports=False) == {token_key("j1"): FRESH.token.encode()}
    assert secrets_to_store("j1", FRESH, has_ports=True) == {
        token_key("j1"): FRESH.token.encode(), session_secret_key("j1"): FRESH.session.encode()}


def test_earlier_secrets_are_known_by_their_token() -> None:
    assert JobSecrets.earlier(None, b"s", FRESH) is None
    assert JobSecrets.earlier(b"tok", b"ses", FRESH) == JobSecrets("tok", "ses")
    assert JobSecrets.earlier(b"tok", None, FRESH) == JobSecrets("tok", FRESH.session)


def test_stale_secrets_are_those_of_finished_jobs_only() -> None:
    ended = view_of(SUBMITTED, ev.JobSubmitFailed(job_id="j1", reason="no"))
    running = view_of(ev.JobSubmitted(job_id="j2", uid="bob", template_name="sleep"))
    assert ended is not None and running is not None
    names = [token_key("j1"), session_secret_key("j1"), token_key("j2"), token_key("j3")]
    assert stale_secrets([ended, running], names) == [token_key("j1"), session_secret_key("j1")]


def test_render_job_says_whether_the_script_asks_for_ports() -> None:
    config = SubmitConfig(home_prefix="/home", keyhole_servers=["http://k:4243"])
    script, has_ports = render_job("#!/bin/bash\n#KEYHOLE-REQUEST-PORTS 1\n", SUBMITTED, config, FRESH)
    assert has_ports and FRESH.token in script and FRESH.session in script
    script, has_ports = render_job("#!/bin/bash\nsleep {{seconds}}\n", SUBMITTED, config, FRESH)
    assert not has_ports and FRESH.token not in script and "sleep 5" in script


def test_a_template_name_from_the_log_is_checked_again() -> None:
    assert template_name(SUBMITTED) == "sleep"
    with pytest.raises(TemplateError):
        template_name(ev.JobSubmitted(job_id="j1", uid="alice", template_name="../etc/passwd"))


def test_a_missing_user_and_a_refused_one() -> None:
    policy = UserPolicy(middleware_accounts={"bwvisu"})
    assert user_refusal("mallory", None, policy) == "no such user on the cluster: mallory"
    assert user_refusal("bwvisu", Identity("bwvisu", 1500, frozenset()), policy) == (
        "bwvisu is the middleware's own account")
    assert user_refusal("alice", Identity("alice", 1001, frozenset({"alice"})), policy) is None


def test_questions_that_need_no_cluster_are_answered_at_once() -> None:
    assert check_user_request(b"{") == CheckUserReply(error="malformed check-user request")
    assert check_user_request(msgspec.json.encode(CheckUser(uid="-rf"))) == CheckUserReply(exists=False)
    assert check_user_request(msgspec.json.encode(CheckUser(uid="alice"))) == "alice"
    refused = CheckUserReply(exists=False, reason="root is the superuser")
    assert check_user_reply("root is the superuser") == refused
    assert check_user_reply(None) == CheckUserReply(exists=True)
    malformed = JobLogReply(error="malformed job-log request")
    for bad in (JobLog(uid="alice", job_id="../x"), JobLog(uid="alice", job_id="j1", lines=0),
                JobLog(uid="alice", job_id="j1", lines=1001), JobLog(uid="-x", job_id="j1")):
        assert job_log_request(msgspec.json.encode(bad), "/home") == malformed
    read = job_log_request(msgspec.json.encode(JobLog(uid="alice", job_id="j1", lines=5)), "/home/")
    assert read == LogRead(uid="alice", path="/home/alice/bwvisu-job-j1.out", lines=5)
