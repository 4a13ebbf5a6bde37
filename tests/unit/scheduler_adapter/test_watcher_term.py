"""The watcher as the holder of the watcher role: it acts only while its term is held."""

from __future__ import annotations

import asyncio

from bwvisu_common import events as ev
from bwvisu_common.election import Term
from bwvisu_common.state_keys import submission_role
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.ports import CommandResult
from scheduler_adapter.watcher import Watcher
from tests.conditions import eventually
from tests.fakes.election import ElectionBoard, FakeElection
from tests.unit.scheduler_adapter.test_watcher import Setup, failed_submit


async def held(election: FakeElection) -> Term:
    term = await election.try_hold("watcher")
    assert term is not None
    return term


def polls(s: Setup) -> int:
    return len(s.runner.calls_of("squeue"))


async def test_the_watcher_stops_polling_the_moment_its_term_is_over() -> None:
    s, election = Setup(), FakeElection(ElectionBoard(), "a")
    s.squeue("")
    term = await held(election)
    running = asyncio.create_task(s.watcher.run(asyncio.Event(), term))
    await eventually(lambda: polls(s) >= 2, "it polls while it holds the role")
    election.lose_lease()
    await asyncio.wait_for(running, 1)
    after = polls(s)
    await asyncio.sleep(0.05)
    assert polls(s) == after, "no squeue once the term is over"


async def test_a_term_lost_during_the_poll_appends_nothing_of_it() -> None:
    s, election = Setup(), FakeElection(ElectionBoard(), "a")
    await s.queued("j1", "100")
    term = await held(election)

    def answer_then_lose_the_lease(argv: list[str], input: str | None) -> CommandResult:
        election.lose_lease()  # etcd let the lease go while squeue ran
        return CommandResult(0, "100|RUNNING|None|cn0|alice|0|bwvisu-j1\n", "")

    s.runner.on(["squeue", "**"], answer_then_lose_the_lease)
    await asyncio.wait_for(s.watcher.run(asyncio.Event(), term), 1)
    assert s.state("j1") == "submitted", "a replica that may not be the watcher any more says nothing"
    assert not any(isinstance(e, ev.JobStarted) for _, e in await s.events.read_job("j1"))


async def test_a_stray_is_not_cancelled_by_a_watcher_whose_term_is_over() -> None:
    s, election = Setup(), FakeElection(ElectionBoard(), "a")
    await failed_submit(s)
    term = await held(election)

    def confirm_then_lose_the_lease(argv: list[str], input: str | None) -> CommandResult:
        election.lose_lease()  # while Slurm confirmed the stray
        return CommandResult(0, "7\n", "")

    s.squeue("7|RUNNING|None|cn0|alice|0|bwvisu-j1\n", confirms="7\n")
    s.runner.rules[0].outcome = confirm_then_lose_the_lease
    s.runner.on(["sudo", "-n", "-u", "alice", "scancel", "7"], "")
    await asyncio.wait_for(s.watcher.run(asyncio.Event(), term), 1)
    assert s.runner.calls_of("squeue") and not s.runner.calls_of("scancel")


async def test_absences_counted_in_an_earlier_term_do_not_count_in_the_next() -> None:
    s, election = Setup(), FakeElection(ElectionBoard(), "a")
    await s.queued("j1", "100")
    s.squeue("")
    first = await held(election)
    stop = asyncio.Event()

    async def one_poll_then_stop() -> None:
        await eventually(lambda: polls(s) == 1, "one poll", interval=0.001)
        election.lose_lease()

    await asyncio.gather(s.watcher.run(stop, first), one_poll_then_stop())
    assert s.state("j1") == "submitted"  # absent once: 2 needed
    second = await held(election)
    before = polls(s)
    watching = asyncio.create_task(s.watcher.run(stop, second))
    await eventually(lambda: polls(s) == before + 1, "the new term's first poll", interval=0.001)
    assert s.state("j1") == "submitted", "one absence in this term is not two"
    await eventually(lambda: s.state("j1") == "finished", "two absences in this term end it")
    stop.set()
    await asyncio.wait_for(watching, 1)


async def test_a_job_another_replica_is_submitting_is_not_adopted_from_under_it() -> None:
    s, board = Setup(), ElectionBoard()
    s.watcher = Watcher(SlurmCli(s.runner), s.views, s.events, tag="bwvisu", interval=0.01,
                        absent_polls_to_finish=2, claims=FakeElection(board, "watcher"))
    s.job_ids.append("j1")
    await s.events.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="t")])
    claim = await FakeElection(board, "other").try_hold(submission_role("j1"))
    assert claim is not None  # the other replica between its sbatch and its JobQueued
    s.squeue("9|RUNNING|None|cn0|alice|0|bwvisu-j1\n", confirms="9\n")
    await s.watcher.poll_once()
    assert not any(isinstance(e, ev.JobAdopted) for _, e in await s.events.read_job("j1"))
    claim.end("the other replica died before its JobQueued")
    await s.watcher.poll_once()
    adopted = [e.slurm_id for _, e in await s.events.read_job("j1") if isinstance(e, ev.JobAdopted)]
    assert adopted == ["9"], "once nobody submits it, the tagged Slurm job is the job's"
