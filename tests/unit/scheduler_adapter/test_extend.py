"""Extend on the scheduler's side: the rule, Slurm's time limits, and scontrol run once per request."""

from __future__ import annotations

import pytest

from bwvisu_common import events as ev
from bwvisu_common.read_model import JobView, fold
from bwvisu_common.run_time import ExtensionRefusal, extension_left, extension_refusal
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.domain.extend import Extend, decide_extension, parse_time_limit
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.extensions import Extensions
from scheduler_adapter.ports import CommandResult
from tests.fakes.command_runner import FakeCommandRunner
from tests.fakes.event_store import InMemoryEventStore

SQUEUE_LIMIT = ["squeue", "--noheader", "--all", "--states=all", "--jobs=4711", "--Format=TimeLimit"]
SCONTROL = ["sudo", "-n", "scontrol", "update", "JobId=4711", "TimeLimit=*"]


@pytest.mark.parametrize(("text", "minutes"), [
    ("5:00", 5), ("  1:30:00  ", 90), ("45", 45), ("2-00:00:00", 2880), ("1-02", 1560), ("1-02:03", 1563),
    ("4:30", 5), ("UNLIMITED", None), ("INFINITE", None),
])
def test_slurm_time_limits_in_minutes(text: str, minutes: int | None) -> None:
    assert parse_time_limit(text) == minutes


@pytest.mark.parametrize("text", ["", "soon", "1:2:3:4", "-5", "1-", "５:00", "1:xx"])
def test_anything_else_is_no_time_limit(text: str) -> None:
    with pytest.raises(ValueError, match="not a Slurm time limit"):
        parse_time_limit(text)


def running_job(**changes: object) -> JobView:
    job = fold([(1, ev.JobSubmitted(job_id="j1", uid="alice", template_name="t", variables={"runtime": "3"})),
                (2, ev.JobQueued(job_id="j1", slurm_id="4711")),
                (3, ev.JobStarted(job_id="j1", nodes=["cn0"]))])
    assert job is not None
    return JobView(**{**{f: getattr(job, f) for f in job.__struct_fields__}, **changes})


def test_the_rule_allows_only_a_running_job_within_the_sites_maximum() -> None:
    job = running_job()
    assert extension_refusal(job, 30, 60) == (ExtensionRefusal.NONE, "")
    assert extension_refusal(job, 30, 0)[0] is ExtensionRefusal.NOT_ALLOWED
    assert extension_refusal(job, 61, 60) == (
        ExtensionRefusal.TOO_MUCH, "between 1 and 60 more minutes may be added (the site allows 60 in all)")
    assert extension_refusal(job, 0, 60)[0] is ExtensionRefusal.TOO_MUCH
    assert extension_refusal(running_job(extended_minutes=45), 20, 60)[1].startswith("between 1 and 15 ")
    assert extension_refusal(running_job(extended_minutes=60), 1, 60) == (
        ExtensionRefusal.TOO_MUCH, "the session was extended by the most this site allows (60 minutes)")
    for not_running in (running_job(state="submitted"), running_job(state="completing"),
                        running_job(state="finished"), running_job(cancel_requested=True)):
        assert extension_refusal(not_running, 5, 60) == (ExtensionRefusal.NOT_RUNNING,
                                                         "the session is not running")
    assert extension_left(running_job(extended_minutes=45), 60) == 15
    assert extension_left(running_job(state="finished"), 60) == 0


def test_a_request_is_decided_once_and_later_ones_build_on_the_limit_bwvisu_set() -> None:
    request = ev.JobExtensionRequested(job_id="j1", minutes=15)
    assert decide_extension(running_job(), request, 60) is None, "not pending: answered or never asked"
    pending = running_job(extension_pending=request.event_id)
    assert decide_extension(pending, request, 60) == Extend(slurm_id="4711", minutes=15, base=None)
    again = running_job(extension_pending=request.event_id, time_limit=45, extended_minutes=15)
    assert decide_extension(again, request, 60) == Extend(slurm_id="4711", minutes=15, base=45)
    refused = decide_extension(running_job(extension_pending=request.event_id), request, 10)
    assert isinstance(refused, ev.JobExtensionRefused) and refused.request_id == request.event_id


def test_the_read_model_counts_granted_minutes_and_keeps_the_last_refusal() -> None:
    first = ev.JobExtensionRequested(job_id="j1", minutes=15)
    second = ev.JobExtensionRequested(job_id="j1", minutes=50)
    granted = ev.JobExtended(job_id="j1", request_id=first.event_id, minutes=15, time_limit=45)
    history = [first, granted, granted, second,
               ev.JobExtensionRefused(job_id="j1", request_id=second.event_id, reason="too much")]
    job = running_job()
    for seq, event in enumerate(history, start=10):
        job = fold([(seq, event)], job)
        if event is first:
            assert job.extension_pending == first.event_id
    assert job is not None
    assert (job.extended_minutes, job.time_limit, job.extension_pending) == (15, 45, ""), "counted once"
    assert (job.extension_answered, job.extension_refusal) == (second.event_id, "too much")


class World:
    def __init__(self, max_extension: int = 60) -> None:
        self.events = InMemoryEventStore()
        self.runner = FakeCommandRunner()
        self.extensions = Extensions(self.events, SlurmCli(self.runner, "bwvisu"), max_extension)

    async def running(self) -> None:
        await self.events.append([
            ev.JobSubmitted(job_id="j1", uid="alice", template_name="t", variables={"runtime": "30"}),
            ev.JobQueued(job_id="j1", slurm_id="4711"), ev.JobStarted(job_id="j1", nodes=["cn0"])])

    async def ask(self, minutes: int) -> ev.JobExtensionRequested:
        request = ev.JobExtensionRequested(job_id="j1", minutes=minutes)
        await self.events.append([request])
        await self.extensions.on_requested(request)
        return request

    async def job(self) -> JobView:
        job = fold(list(await self.events.read_job("j1")))
        assert job is not None
        return job

    def limits_set(self) -> list[str]:
        return [c.argv[-1] for c in self.runner.calls_of("scontrol")]


async def test_extensions_set_absolute_limits_and_a_redelivery_changes_nothing() -> None:
    world = World()
    await world.running()
    world.runner.on(SQUEUE_LIMIT, "30:00              \n").on(SCONTROL, "")
    first = await world.ask(20)
    await world.extensions.on_requested(first)  # redelivered: answered already
    await world.ask(25)
    assert world.limits_set() == ["TimeLimit=50", "TimeLimit=75"]
    assert len(world.runner.calls_of("squeue")) == 1, "later limits build on the one bwvisu set"
    job = await world.job()
    assert (job.extended_minutes, job.time_limit, job.extension_refusal) == (45, 75, "")
    await world.ask(16)
    job = await world.job()
    assert job.extension_refusal.startswith("between 1 and 15 more minutes")
    assert world.limits_set() == ["TimeLimit=50", "TimeLimit=75"], "nothing asked of Slurm beyond the maximum"


async def test_slurms_and_sudos_refusals_reach_the_owner_and_a_busy_slurm_is_asked_again() -> None:
    world = World()
    await world.running()
    world.runner.on(SQUEUE_LIMIT, "30:00\n")
    world.runner.on(SCONTROL, CommandResult(1, "", "sudo: a password is required\n"), times=1)
    await world.ask(10)
    reason = (await world.job()).extension_refusal
    assert "a password is required" in reason and "sudo rule for scontrol update is missing" in reason
    world.runner.on(SCONTROL, CommandResult(1, "", "slurm_update error: Socket timed out on send/recv\n"))
    request = ev.JobExtensionRequested(job_id="j1", minutes=10)
    await world.events.append([request])
    with pytest.raises(SchedulerUnavailable):
        await world.extensions.on_requested(request)
    assert (await world.job()).extension_pending == request.event_id, "left for the redelivery"


async def test_a_job_without_a_time_limit_or_unknown_to_slurm_is_refused() -> None:
    world = World()
    await world.running()
    world.runner.on(SQUEUE_LIMIT, "UNLIMITED\n", times=1)
    await world.ask(10)
    assert (await world.job()).extension_refusal == "the session has no time limit to extend"
    world.runner.on(SQUEUE_LIMIT, CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n"))
    await world.ask(10)
    assert (await world.job()).extension_refusal == "Slurm did not extend it: Slurm has no job 4711"
    assert world.limits_set() == []


async def test_a_site_without_extensions_never_runs_scontrol() -> None:
    world = World(max_extension=0)
    await world.running()
    await world.ask(10)
    assert (await world.job()).extension_refusal == "this site does not allow extending sessions"
    assert world.runner.calls == []


async def test_a_request_that_comes_again_after_a_crash_sets_the_same_limit() -> None:
    world = World()
    await world.running()
    applied: list[str] = []

    def crash_after_applying(argv: list[str], _: str | None) -> CommandResult:
        applied.append(argv[-1])
        if len(applied) == 1:
            raise RuntimeError("the process died before it recorded the answer")
        return CommandResult(0, "", "")

    world.runner.on(SQUEUE_LIMIT, "30:00\n").on(SCONTROL, crash_after_applying)
    request = ev.JobExtensionRequested(job_id="j1", minutes=20)
    await world.events.append([request])
    with pytest.raises(RuntimeError):
        await world.extensions.on_requested(request)
    await world.extensions.on_requested(request)  # redelivered
    assert applied == ["TimeLimit=50", "TimeLimit=50"], "Slurm's raised limit is never read as the base"
    assert len(world.runner.calls_of("squeue")) == 1
    job = await world.job()
    assert (job.extended_minutes, job.time_limit) == (20, 50)
