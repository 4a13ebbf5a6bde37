from __future__ import annotations

from bwvisu_common import events as ev
from bwvisu_common.adapters.memory import InMemoryEventStore
from bwvisu_common.projections import JobView, fold
from scheduler_adapter.adapters.fake import FakeCommandRunner
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.watcher import Watcher


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

    async def queued(self, job_id: str, slurm_id: str) -> None:
        self.job_ids.append(job_id)
        await self.events.append([ev.JobSubmitted(job_id=job_id, uid="alice", template_name="t"),
                                  ev.JobQueued(job_id=job_id, slurm_id=slurm_id)])

    def squeue(self, text: str) -> None:
        self.runner.rules.clear()
        self.runner.on(["squeue", "**"], text)

    def state(self, job_id: str) -> str:
        return next(v.state for v in self.views() if v.job_id == job_id)


async def test_one_squeue_per_cycle_whatever_the_job_count() -> None:
    s = Setup()
    for i in range(50):
        await s.queued(f"j{i}", str(100 + i))
    s.squeue("".join(f"{100 + i}|RUNNING|None|cn{i % 2}|alice|0|bwvisu-j{i}\n" for i in range(50)))
    assert await s.watcher.poll_once() == 50
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


async def test_stray_jobs_of_failed_submits_are_cancelled_once() -> None:
    s = Setup()
    s.job_ids.append("j1")
    await s.events.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"),
                           ev.JobSubmitFailed(job_id="j1", reason="lost", kind="unavailable")])
    s.squeue("7|RUNNING|None|cn0|alice|0|bwvisu-j1\n")
    s.runner.on(["sudo", "-n", "-u", "alice", "scancel", "7"], "")
    await s.watcher.poll_once()
    await s.watcher.poll_once()
    assert len(s.runner.calls_of("scancel")) == 1
