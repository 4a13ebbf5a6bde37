from __future__ import annotations

import logging

import pytest

from bwvisu_common import events as ev
from bwvisu_common.job_facts import FailureKind
from bwvisu_common.read_model import JobView, fold
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.watcher import Watcher
from tests.fakes.command_runner import FakeCommandRunner
from tests.fakes.event_store import InMemoryEventStore
from tests.samples import sample


class Setup:
    def __init__(self) -> None:
        self.events = InMemoryEventStore()
        self.runner = FakeCommandRunner()
        self.watcher = Watcher(SlurmCli(self.runner), self.views, self.events, tag="bwvisu", interval=0.01,
                               absent_polls_to_finish=2)
        self.job_ids: list[str] = []

    def views(self) -> list[JobView]:
        # The projection as the stream has it right now (LiveJobs in the service).
        out = []
        for job_id in self.job_ids:
            job = fold([(s, e) for s, e in self.events._log if e.job_id == job_id])  # type: ignore[attr-defined]
            if job is not None:
                out.append(job)
        return out

    async def queued(self, job_id: str, slurm_id: str, uid: str = "alice") -> None:
        self.job_ids.append(job_id)
        await self.events.append([ev.JobSubmitted(job_id=job_id, uid=uid, template_name="t"),
                                  ev.JobQueued(job_id=job_id, slurm_id=slurm_id)])

    def squeue(self, text: str, *, confirms: str = "", nameless: str = "") -> None:
        """What the poll prints; what Slurm's own filters confirm (ids); the name-free re-check."""
        self.runner.rules.clear()
        self.runner.on(["squeue", "--noheader", "--all", "--states=all", "--jobs=*", "--name=*", "--users=*",
                        "--format=%i"], confirms)
        self.runner.on(["squeue", "--noheader", "--all", "--states=all", "--jobs=*", "--Format=*"], nameless)
        self.runner.on(["squeue", "**"], text)

    def state(self, job_id: str) -> str:
        return next(v.state for v in self.views() if v.job_id == job_id)


async def test_one_squeue_per_cycle_whatever_the_job_count() -> None:
    s = Setup()
    for i in range(50):
        await s.queued(f"j{i}", str(100 + i))
    s.squeue("".join(f"{100 + i}|RUNNING|None|cn{i % 2}|alice|0|bwvisu-j{i}\n" for i in range(50)))
    cycles = sample("bwvisu_squeue_cycle_duration_seconds_count")
    assert await s.watcher.poll_once() == 50
    assert sample("bwvisu_squeue_lines") == 50
    assert sample("bwvisu_squeue_cycle_duration_seconds_count") == cycles + 1
    assert len(s.runner.calls) == 1
    assert all(v.state == "running" for v in s.views())
    assert await s.watcher.poll_once() == 0  # nothing new
    assert len(s.runner.calls) == 2


async def test_an_unreachable_controller_changes_nothing_and_is_noted_once() -> None:
    s = Setup()
    await s.queued("j1", "100")
    s.squeue("100|RUNNING|None|cn0|alice|0|bwvisu-j1\n")
    await s.watcher.poll_once()
    s.runner.rules.clear()
    s.runner.on(["squeue", "**"], SchedulerUnavailable("no command node answered"))
    for _ in range(5):
        await s.watcher.poll_once()
    view = s.views()[0]
    assert view.state == "running" and "no command node answered" in view.details
    notes = [e for _, e in await s.events.read_job("j1") if isinstance(e, ev.JobDetailsChanged)]
    assert len(notes) == 1
    # Back, and the job has gone meanwhile: finished only after 2 successful polls.
    s.squeue("")
    await s.watcher.poll_once()
    assert s.state("j1") == "running"
    await s.watcher.poll_once()
    assert s.state("j1") == "finished"


async def failed_submit(s: Setup) -> None:
    """j1's submission failed as far as bwvisu knows (Slurm may still hold a job of it)."""
    s.job_ids.append("j1")
    await s.events.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"),
                           ev.JobSubmitFailed(job_id="j1", reason="lost", kind=FailureKind.UNAVAILABLE)])


async def test_stray_jobs_of_failed_submits_are_cancelled_once() -> None:
    s = Setup()
    await failed_submit(s)
    s.squeue("7|RUNNING|None|cn0|alice|0|bwvisu-j1\n", confirms="7\n")
    s.runner.on(["sudo", "-n", "-u", "alice", "scancel", "7"], "")
    await s.watcher.poll_once()
    await s.watcher.poll_once()
    assert len(s.runner.calls_of("scancel")) == 1


async def test_a_stray_that_slurm_does_not_confirm_is_not_cancelled() -> None:
    s = Setup()
    await failed_submit(s)
    s.squeue("7|RUNNING|None|cn0|alice|0|bwvisu-j1\n", confirms="")
    await s.watcher.poll_once()
    assert s.runner.calls_of("scancel") == []


async def test_a_forged_line_for_bobs_job_changes_nothing_of_it(caplog: pytest.LogCaptureFixture) -> None:
    s = Setup()
    await s.queued("j1", "100", uid="bob")
    s.squeue("100|RUNNING|None|cn0|bob|0|bwvisu-j1\n")
    await s.watcher.poll_once()
    assert s.state("j1") == "running"
    # alice's job 200 is named "x\n100|COMPLETED|None|cn0|bob|0|bwvisu-j1".
    s.squeue("100|RUNNING|None|cn0|bob|0|bwvisu-j1\n200|RUNNING|None|cn1|alice|0|x\n"
             "100|COMPLETED|None|cn0|bob|0|bwvisu-j1\n", nameless="100|RUNNING|None|cn0|bob|0|\n")
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            await s.watcher.poll_once()
    assert s.state("j1") == "running"
    assert [type(e).__name__ for _, e in await s.events.read_job("j1")] == [
        "JobSubmitted", "JobQueued", "JobStarted"]
    # Asked again without names, once per poll; said once in the log, without the forged text.
    assert sum("--Format=JobID:|,State:|,Reason:|,NodeList:|,UserName:|,exit_code:|" in c.argv
               for c in s.runner.calls) == 4
    warnings = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert len(warnings) == 1 and "COMPLETED" not in warnings[0]


async def test_the_name_free_recheck_still_ends_a_job_that_really_ended() -> None:
    s = Setup()
    await s.queued("j1", "100", uid="bob")
    s.squeue("100|COMPLETED|None|cn0|bob|0|bwvisu-j1\n200|RUNNING|None|cn1|alice|0|x\n"
             "100|RUNNING|None|cn0|bob|0|bwvisu-j1\n", nameless="100|COMPLETED|None|cn0|bob|0|\n")
    await s.watcher.poll_once()
    assert s.state("j1") == "finished"


async def test_lines_that_are_no_record_are_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    s = Setup()
    await s.queued("j1", "100")
    s.squeue("300|RUNNING|None|cn0|carol|0|line one\nline two of carol's job name\n"
             "100|RUNNING|None|cn0|alice|0|bwvisu-j1\n")
    with caplog.at_level(logging.WARNING):
        assert await s.watcher.poll_once() == 1
    assert s.state("j1") == "running"
    [warning] = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "1 line(s)" in warning and "line two of carol" in warning


async def test_a_submitted_job_is_adopted_only_when_slurm_confirms_it() -> None:
    s = Setup()
    s.job_ids.append("j1")
    await s.events.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="t")])
    s.squeue("9|RUNNING|None|cn0|alice|0|bwvisu-j1\n", confirms="")
    await s.watcher.poll_once()
    assert not any(isinstance(e, ev.JobAdopted) for _, e in await s.events.read_job("j1"))
    s.squeue("9|RUNNING|None|cn0|alice|0|bwvisu-j1\n", confirms="9\n")
    await s.watcher.poll_once()
    adopted = [e for _, e in await s.events.read_job("j1") if isinstance(e, ev.JobAdopted)]
    assert [(e.slurm_id, e.uid) for e in adopted] == [("9", "alice")]
