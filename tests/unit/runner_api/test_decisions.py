"""runner-api's pure decisions: a job as the read model shows it, a request, and what follows."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from bwvisu_common import events as ev
from bwvisu_common.errors import InvalidInput
from bwvisu_common.read_model import JobView, fold
from runner_api.domain.jobs import (
    allowed_clients,
    check_log_lines,
    decide_allow_client,
    decide_cancel,
    gave_up,
    is_decided,
    owned,
    running,
    running_ids,
    submit_refusal,
)
from runner_api.errors import NotFound


def job(*later: ev.Event, job_id: str = "j1", uid: str = "alice") -> JobView:
    submitted = ev.JobSubmitted(job_id=job_id, uid=uid, template_name="sleep")
    view = fold(list(enumerate([submitted, *later], start=1)))
    assert view is not None
    return view


QUEUED = ev.JobQueued(job_id="j1", slurm_id="7")
ENDED = ev.JobEnded(job_id="j1", slurm_state="COMPLETED")


def test_a_submission_is_decided_once_queued_or_over() -> None:
    assert not is_decided(job())
    assert is_decided(job(QUEUED))
    assert is_decided(job(ev.JobSubmitFailed(job_id="j1", reason="no", kind="unknown-user")))


def test_a_refused_submission_carries_the_schedulers_kind_and_reason() -> None:
    assert submit_refusal(job(QUEUED)) is None
    assert submit_refusal(job(QUEUED, ENDED)) is None  # it ran: no refusal
    failed = job(ev.JobSubmitFailed(job_id="j1", reason="no such user: x", kind="unknown-user"))
    refusal = submit_refusal(failed)
    assert refusal is not None and refusal.kind == "unknown-user"
    assert str(refusal) == failed.why.text == "no such user: x"


def test_giving_up_is_a_failure_the_user_may_retry() -> None:
    failed = gave_up("j1", 60.0)
    assert (failed.job_id, failed.kind) == ("j1", "unavailable")
    assert failed.reason == "no scheduler answered within 60 s"


def test_another_users_job_does_not_exist() -> None:
    assert owned(job(), "alice").job_id == "j1"
    assert owned(job(), None).job_id == "j1"
    for missing, uid in ((None, None), (job(), "bob")):
        with pytest.raises(NotFound):
            owned(missing, uid)


def test_only_a_running_job_of_its_owner_is_acted_on() -> None:
    assert running(job(QUEUED), "alice").job_id == "j1"
    for gone, uid in ((None, None), (job(QUEUED), "bob"), (job(QUEUED, ENDED), None)):
        with pytest.raises(NotFound):
            running(gone, uid)


def test_cancel_is_asked_once() -> None:
    [asked] = decide_cancel(job(QUEUED))
    assert isinstance(asked, ev.JobCancelRequested) and asked.job_id == "j1"
    assert decide_cancel(job(QUEUED, asked)) == []


def test_a_client_address_is_allowed_once() -> None:
    before = job(QUEUED)
    decided = decide_allow_client(before, "10.0.0.5")
    assert [type(e) for e in decided] == [ev.ClientAddressAllowed]
    assert allowed_clients(before, decided) == ["10.0.0.5"]
    after = job(QUEUED, *decided)
    assert decide_allow_client(after, "10.0.0.5") == []
    assert allowed_clients(after, []) == ["10.0.0.5"]


@pytest.mark.parametrize("lines", [0, -1, 1001])
def test_log_lines_are_bounded(lines: int) -> None:
    with pytest.raises(InvalidInput):
        check_log_lines(lines)
    assert check_log_lines(1) == 1 and check_log_lines(1000) == 1000


def test_running_ids_oldest_first_and_only_the_users() -> None:
    new, theirs = job(job_id="b"), job(job_id="c", uid="bob")
    assert new.submitted_at is not None
    old = msgspec.structs.replace(job(job_id="a"), submitted_at=new.submitted_at - timedelta(minutes=1))
    over = job(ev.JobEnded(job_id="d", slurm_state="COMPLETED"), job_id="d")
    assert running_ids([new, over, theirs, old], "alice") == ["a", "b"]
    assert set(running_ids([new, over, theirs, old], None)) == {"a", "b", "c"}

