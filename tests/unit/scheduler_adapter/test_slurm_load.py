"""Slurm's limits: cancels that come together share one scancel, a busy slurmctld gets a pause."""

from __future__ import annotations

import asyncio

import pytest

from scheduler_adapter.adapters.slurm import PRIVATE_UMASK, SlurmCli
from scheduler_adapter.domain.slurmctld import Backoff, cancel_complaints, is_busy
from scheduler_adapter.errors import CommandOutcomeUnknown, SchedulerError, SchedulerUnavailable
from scheduler_adapter.ports import CommandResult
from tests.fakes.command_runner import FakeCommandRunner

SBATCH = [*PRIVATE_UMASK, "sudo", "-n", "-u", "*", "sbatch", "--parsable", "--job-name=bwvisu-*"]
FIND = ["squeue", "--noheader", "--all", "--states=all", "--name=bwvisu-j1", "--users=alice", "--format=%i"]
TIMED_OUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"


def kill_error(slurm_id: str, why: str) -> str:
    return f"scancel: error: Kill job error on job id {slurm_id}: {why}\n"


def test_busy_words_are_told_from_answers_about_a_job() -> None:
    assert is_busy(TIMED_OUT)
    assert is_busy("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
    assert is_busy("scancel: error: Kill job error on job id 3: Resource temporarily unavailable")
    assert not is_busy("slurm_load_jobs error: Invalid job id specified")
    assert not is_busy("sbatch: error: invalid partition specified: nope")


def test_scancel_complaints_are_sorted_by_job() -> None:
    text = (kill_error("2", "Job/step already completing or completed")
            + kill_error("3", "Access/permission denied")
            + kill_error("4", "Invalid job id specified") + "sudo: error initializing audit plugin\n")
    assert cancel_complaints(text, ["1", "2", "3", "4"]) == {
        "1": None, "2": None, "3": "Access/permission denied", "4": None}
    # Words naming no job are every unnamed job's.
    said = "Unable to contact slurm controller\n" + kill_error("2", "Invalid job id specified")
    assert cancel_complaints(said, ["1", "2"]) == {"1": "Unable to contact slurm controller", "2": None}


def test_backoff_doubles_per_pause_not_per_answer_and_an_answer_resets_it() -> None:
    backoff = Backoff(first=1.0, most=3.0)
    backoff.busy(10.0)
    backoff.busy(10.5)  # sent before the pause began: the same load
    assert (backoff.delay, backoff.pause(10.5)) == (1.0, 0.5)
    backoff.busy(11.0)
    backoff.busy(13.0)
    assert (backoff.delay, backoff.pause(13.0)) == (3.0, 3.0)  # 1, 2, then capped at 3
    backoff.answered()
    backoff.busy(16.0)
    assert backoff.delay == 1.0


def cli(runner: FakeCommandRunner, *, window: float = 0.05, batch: int = 200, first: float = 0.5) -> SlurmCli:
    return SlurmCli(runner, "bwvisu", lookup_attempts=2, lookup_delay=0, cancel_window=window,
                    cancel_batch=batch, backoff=Backoff(first=first, most=5.0))


async def test_cancels_arriving_together_are_one_scancel_per_user() -> None:
    runner = FakeCommandRunner().on(["sudo", "-n", "-u", "*", "scancel", "**"], "")
    slurm = cli(runner)
    await asyncio.gather(*(slurm.cancel("alice", str(i)) for i in range(1, 6)), slurm.cancel("bob", "9"))
    assert sorted(c.argv for c in runner.calls_of("scancel")) == [
        ["sudo", "-n", "-u", "alice", "scancel", "1", "2", "3", "4", "5"],
        ["sudo", "-n", "-u", "bob", "scancel", "9"]]


async def test_a_full_batch_goes_at_once_and_the_rest_follows() -> None:
    runner = FakeCommandRunner().on(["sudo", "**"], "")
    slurm = cli(runner, window=60.0, batch=3)
    first = [asyncio.create_task(slurm.cancel("alice", str(i))) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(*first), 5)  # not after the 60 s window: it was full
    assert [c.argv[4:] for c in runner.calls] == [["scancel", "0", "1", "2"]]
    late = asyncio.create_task(slurm.cancel("alice", "3"))
    await asyncio.sleep(0.05)
    assert not late.done()  # a new batch, waiting for its window
    late.cancel()
    await slurm.close()


async def test_each_cancel_of_a_batch_gets_its_own_outcome() -> None:
    said = (kill_error("2", "Access/permission denied")
            + kill_error("3", "Socket timed out on send/recv operation"))
    runner = FakeCommandRunner().on(["sudo", "**"], CommandResult(1, "", said))
    slurm = cli(runner)
    one, two, three = await asyncio.gather(*(slurm.cancel("alice", i) for i in ("1", "2", "3")),
                                           return_exceptions=True)
    assert one is None
    assert isinstance(two, SchedulerError) and not isinstance(two, SchedulerUnavailable)
    assert isinstance(three, SchedulerUnavailable)  # comes again later, after the pause


async def test_no_node_answering_fails_every_cancel_of_the_batch_as_unavailable() -> None:
    slurm = cli(FakeCommandRunner(down=True))
    outcomes = await asyncio.gather(slurm.cancel("alice", "1"), slurm.cancel("alice", "2"),
                                    return_exceptions=True)
    assert all(isinstance(o, SchedulerUnavailable) for o in outcomes)


async def test_a_busy_slurmctld_pauses_every_following_command() -> None:
    busy = CommandResult(1, "", "slurm_load_jobs error: Socket timed out on send/recv operation")
    runner = FakeCommandRunner().on(["squeue", "**"], busy, times=1).on(["squeue", "**"], "")
    slurm = cli(runner, first=0.3)
    loop = asyncio.get_running_loop()
    with pytest.raises(SchedulerUnavailable):
        await slurm.find("j1", "alice")
    started = loop.time()
    assert await slurm.find("j1", "alice") is None
    assert loop.time() - started >= 0.25


async def test_a_timed_out_sbatch_is_an_unknown_outcome_resolved_by_the_tag_never_a_second_sbatch() -> None:
    runner = FakeCommandRunner().on(SBATCH, CommandResult(1, "", TIMED_OUT)).on(FIND, "4712\n")
    done = await cli(runner, first=0.01).submit("alice", "x", "j1")
    assert done.slurm_id == "4712" and len(runner.calls_of("sbatch")) == 1
    nothing = FakeCommandRunner().on(SBATCH, CommandResult(1, "", TIMED_OUT)).on(FIND, "")
    with pytest.raises(CommandOutcomeUnknown):
        await cli(nothing, first=0.01).submit("alice", "x", "j1")
    assert len(nothing.calls_of("sbatch")) == 1
