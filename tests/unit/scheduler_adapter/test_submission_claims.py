"""Replicas claim a job's submission: only the holder of its submission role runs sbatch."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bwvisu_common import events as ev
from bwvisu_common.election import LeadershipLost
from bwvisu_common.read_model import JobView, fold
from bwvisu_common.state_keys import session_secret_key, submission_role, token_key
from bwvisu_common.templates import FileTemplates
from scheduler_adapter import handlers as handlers_module
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.domain.render import SubmitConfig
from scheduler_adapter.errors import SubmissionBusy
from scheduler_adapter.handlers import JobHandlers
from scheduler_adapter.ports import CommandResult
from tests.fakes.command_runner import FakeCommandRunner, fake_id
from tests.fakes.election import ElectionBoard, FakeElection
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.state_store import InMemoryStateStore
from tests.unit.scheduler_adapter.test_handlers import SBATCH, TEMPLATE, USERS


class Replicas:
    """Two scheduler-adapters on one log, one state store, one election board and one Slurm."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "sleep.sh.mustache").write_text(TEMPLATE)
        self.events, self.state, self.board = InMemoryEventStore(), InMemoryStateStore(), ElectionBoard()
        self.runner = FakeCommandRunner().on(["id", "--", "*"], fake_id(USERS))
        self.elections = [FakeElection(self.board, f"replica-{i}") for i in range(2)]
        slurm = SlurmCli(self.runner, "bwvisu", lookup_attempts=1)
        self.handlers = [JobHandlers(self.events, self.state, slurm, FileTemplates(tmp),
                                     SubmitConfig(home_prefix="/home"), election=e) for e in self.elections]

    async def submitted(self, job_id: str = "j1") -> tuple[int, ev.JobSubmitted]:
        event = ev.JobSubmitted(job_id=job_id, uid="alice", template_name="sleep", variables={"seconds": "5"})
        return await self.events.append([event]), event


@pytest.fixture
def replicas(tmp_path: Path) -> Replicas:
    return Replicas(tmp_path)


async def test_the_second_replica_waits_for_the_first_and_finds_the_job_submitted(replicas: Replicas) -> None:
    async def slow_sbatch(argv: list[str], script: str | None) -> CommandResult:
        await asyncio.sleep(0.1)
        return CommandResult(0, "4711\n", "")

    replicas.runner.on(SBATCH, slow_sbatch)
    seq, event = await replicas.submitted()
    a, b = replicas.handlers
    await asyncio.gather(a.on_submitted(event, seq), b.on_submitted(event, seq))
    assert len(replicas.runner.calls_of("sbatch")) == 1
    log = [e for _, e in await replicas.events.read_job("j1")]
    assert [type(e).__name__ for e in log] == ["JobSubmitted", "JobQueued"]
    assert await replicas.elections[0].holder(submission_role("j1")) is None, "the claim is given back"


async def test_a_claim_lost_before_sbatch_submits_nothing_and_the_event_comes_again(
    replicas: Replicas
) -> None:
    replicas.runner.on(SBATCH, "4711\n")
    replicas.runner.on(["squeue", "**"], "")  # the retry looks for an earlier attempt's job: none
    seq, event = await replicas.submitted()
    a = replicas.handlers[0]
    real_refusal = a._users.refusal

    async def lease_lost_meanwhile(uid: str) -> str | None:
        replicas.elections[0].lose_lease()  # etcd let the lease go while the user was looked up
        return await real_refusal(uid)

    a._users.refusal = lease_lost_meanwhile  # type: ignore[method-assign]
    with pytest.raises(LeadershipLost):
        await a.on_submitted(event, seq)
    assert replicas.runner.calls_of("sbatch") == []
    await replicas.handlers[1].on_submitted(event, seq)  # the redelivery, on the other replica
    assert len(replicas.runner.calls_of("sbatch")) == 1
    log = [type(e).__name__ for _, e in await replicas.events.read_job("j1")]
    assert log == ["JobSubmitted", "JobQueued"]


async def test_a_claim_held_too_long_elsewhere_lets_the_event_come_again(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers_module, "CLAIM_WAIT", 0.1)
    replicas.runner.on(SBATCH, "4711\n")
    seq, event = await replicas.submitted()
    held = await replicas.elections[1].try_hold(submission_role("j1"))  # replica-1 is at it
    with pytest.raises(SubmissionBusy):
        await replicas.handlers[0].on_submitted(event, seq)
    assert replicas.runner.calls_of("sbatch") == []
    assert held is not None and held.held()


async def test_what_needs_no_sbatch_needs_no_claim(replicas: Replicas) -> None:
    seq, event = await replicas.submitted()
    await replicas.events.append([ev.JobCancelRequested(job_id="j1")])
    replicas.elections[0].unreachable = True  # were it asked, it would fail
    await replicas.handlers[0].on_submitted(event, seq)
    assert isinstance((await replicas.events.read_job("j1"))[-1][1], ev.JobSubmitFailed)


async def test_a_claim_asked_for_a_job_decided_already_is_given_back(replicas: Replicas) -> None:
    replicas.runner.on(SBATCH, "4711\n")
    seq, event = await replicas.submitted()
    a, b = replicas.handlers
    await a.on_submitted(event, seq)
    await b.on_submitted(event, seq)  # the event again, elsewhere: the job is queued already
    assert len(replicas.runner.calls_of("sbatch")) == 1
    for election in replicas.elections:
        assert await election.holder(submission_role("j1")) is None


async def test_a_job_too_old_to_submit_fails_under_the_claim_when_no_attempt_left_secrets(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    seq, event = await replicas.submitted()
    monkeypatch.setattr(handlers_module.ev, "utcnow", lambda: event.time + timedelta(days=1))
    await replicas.handlers[0].on_submitted(event, seq)
    [*_, (_, last)] = await replicas.events.read_job("j1")
    assert isinstance(last, ev.JobSubmitFailed) and "in time" in last.reason
    assert replicas.runner.calls_of("sbatch") == []
    assert await replicas.elections[0].holder(submission_role("j1")) is None


def with_read_model(replicas: Replicas, views: dict[str, JobView]) -> JobHandlers:
    """Replica 0 again, with a read model holding `views` (it may lag the log)."""
    first = replicas.handlers[0]
    return JobHandlers(replicas.events, replicas.state, first._scheduler, first._templates, first._config,
                       election=replicas.elections[0], known=views.get)


async def test_a_job_the_read_model_shows_decided_needs_no_claim_nor_a_read(replicas: Replicas) -> None:
    seq, event = await replicas.submitted()
    queued = ev.JobQueued(job_id="j1", slurm_id="4711")
    queued_seq = await replicas.events.append([queued])
    view = fold([(seq, event), (queued_seq, queued)])
    assert view is not None
    handlers = with_read_model(replicas, {"j1": view})
    replicas.elections[0].unreachable = True  # were it asked, it would fail
    reads: list[str] = []
    real_read = replicas.events.read_job

    async def counted(job_id: str, from_seq: int = 1) -> list[tuple[int, ev.AnyEvent]]:
        reads.append(job_id)
        return await real_read(job_id, from_seq)

    replicas.events.read_job = counted  # type: ignore[method-assign]
    await handlers.on_submitted(event, seq)
    assert reads == [] and replicas.runner.calls_of("sbatch") == []


async def test_a_read_model_that_lags_still_submits_once_under_the_claim(replicas: Replicas) -> None:
    replicas.runner.on(SBATCH, "4711\n")
    seq, event = await replicas.submitted()
    await replicas.handlers[1].on_submitted(event, seq)  # queued by the other replica meanwhile
    lagging = with_read_model(replicas, {})  # its read model has not seen the job yet
    await lagging.on_submitted(event, seq)
    assert len(replicas.runner.calls_of("sbatch")) == 1
    log = [type(e).__name__ for _, e in await replicas.events.read_job("j1")]
    assert log == ["JobSubmitted", "JobQueued"]
    assert await replicas.elections[0].holder(submission_role("j1")) is None, "the claim is given back"


async def test_a_retry_reuses_both_secrets_an_earlier_attempt_stored(replicas: Replicas) -> None:
    replicas.runner.on(SBATCH, "4711\n")
    replicas.runner.on(["squeue", "**"], "")  # the earlier attempt's job is not in Slurm
    seq, event = await replicas.submitted()
    await replicas.state.put_secret(token_key("j1"), b"t" * 64, 60)
    await replicas.state.put_secret(session_secret_key("j1"), b"s" * 43, 60)
    await replicas.handlers[0].on_submitted(event, seq)
    [call] = replicas.runner.calls_of("sbatch")
    assert call.input is not None and "t" * 64 in call.input and "s" * 43 in call.input
