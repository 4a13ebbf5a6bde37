from __future__ import annotations

import pytest

from scheduler_adapter.adapters.slurm import PRIVATE_UMASK, SlurmCli
from scheduler_adapter.domain.slurm import Lifecycle
from scheduler_adapter.domain.users import Identity
from scheduler_adapter.errors import (
    CommandOutcomeUnknown,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRejected,
    UnknownUser,
)
from scheduler_adapter.ports import CommandResult
from tests.fakes.command_runner import FakeCommandRunner

SBATCH = [*PRIVATE_UMASK, "sudo", "-n", "-u", "*", "sbatch", "--parsable", "--job-name=bwvisu-*"]
FIND = ["squeue", "--noheader", "--all", "--states=all", "--name=bwvisu-j1", "--users=alice", "--format=%i"]



def cli(runner: FakeCommandRunner, resubmits: int = 1) -> SlurmCli:
    """A site that allows one new sbatch once Slurm clearly has no such job (off by default)."""
    return SlurmCli(runner, "bwvisu", lookup_attempts=2, lookup_delay=0, resubmits=resubmits)


async def test_submit_pipes_the_script_as_the_user_and_parses_the_id() -> None:
    runner = FakeCommandRunner().on(SBATCH, "4711;cluster\n")
    done = await cli(runner).submit("alice", "#!/bin/bash\necho hi\n", "j1")
    assert done.slurm_id == "4711"
    [call] = runner.calls
    sbatch = ["sudo", "-n", "-u", "alice", "sbatch", "--parsable", "--job-name=bwvisu-j1"]
    assert call.argv == [*PRIVATE_UMASK, *sbatch]
    assert call.input == "#!/bin/bash\necho hi\n"
    assert call.idempotent is False


async def test_unknown_user_and_rejections_are_told_apart() -> None:
    runner = FakeCommandRunner()
    at = SBATCH.index("-u") + 1
    runner.on([*SBATCH[:at], "mallory", *SBATCH[at + 1:]],
              CommandResult(1, "", "sudo: unknown user mallory\nsudo: error initializing audit plugin\n"))
    runner.on(SBATCH, CommandResult(1, "", "sbatch: error: invalid partition specified: nope\n"))
    with pytest.raises(UnknownUser):
        await cli(runner).submit("mallory", "x", "j1")
    with pytest.raises(SubmitRejected, match="invalid partition"):
        await cli(runner).submit("alice", "x", "j1")


async def test_unknown_outcome_is_resolved_by_the_tag_never_by_submitting_again() -> None:
    runner = FakeCommandRunner()
    runner.on(SBATCH, CommandOutcomeUnknown("connection lost"))
    runner.on(FIND, "4712\n")
    done = await cli(runner).submit("alice", "x", "j1")
    assert done.slurm_id == "4712"
    assert len(runner.calls_of("sbatch")) == 1


async def test_unknown_outcome_adopts_a_job_that_shows_up_on_a_later_lookup() -> None:
    runner = FakeCommandRunner()
    runner.on(SBATCH, CommandOutcomeUnknown("connection lost"))
    runner.on(FIND, "", times=1)  # the sbatch was still on its way to slurmctld
    runner.on(FIND, "4712\n")
    done = await cli(runner).submit("alice", "x", "j1")
    assert done.slurm_id == "4712"
    assert len(runner.calls_of("sbatch")) == 1 and len(runner.calls_of("squeue")) == 2


async def test_unknown_outcome_with_no_tagged_job_in_slurm_submits_once_more() -> None:
    runner = FakeCommandRunner()
    runner.on(SBATCH, CommandOutcomeUnknown("connection lost"), times=1)
    runner.on(SBATCH, CommandResult(0, "4713\n", "", "login1"))
    runner.on(FIND, SchedulerUnavailable("down"), times=1)
    runner.on(FIND, "")
    done = await cli(runner).submit("alice", "#!/bin/bash\n", "j1")
    assert (done.slurm_id, done.node) == ("4713", "login1")
    first, second = runner.calls_of("sbatch")
    assert first == second  # the same script, under the same tag
    # Every lookup came before the second sbatch.
    assert [c.argv[0] for c in runner.calls] == ["sh", "squeue", "squeue", "sh"]


async def test_unknown_outcome_is_never_resubmitted_while_slurm_cannot_be_asked() -> None:
    runner = FakeCommandRunner()
    runner.on(SBATCH, CommandOutcomeUnknown("connection lost"))
    runner.on(FIND, SchedulerUnavailable("down"))
    with pytest.raises(CommandOutcomeUnknown, match="could not be asked"):
        await cli(runner).submit("alice", "x", "j1")
    assert len(runner.calls_of("sbatch")) == 1 and len(runner.calls_of("squeue")) == 2


async def test_a_squeue_error_is_no_answer_and_no_reason_to_submit_again() -> None:
    runner = FakeCommandRunner()
    runner.on(SBATCH, CommandOutcomeUnknown("connection lost"))
    runner.on(FIND, CommandResult(1, "", "slurm_load_jobs error: Unable to contact slurm controller"))
    with pytest.raises(CommandOutcomeUnknown, match="could not be asked"):
        await cli(runner).submit("alice", "x", "j1")
    assert len(runner.calls_of("sbatch")) == 1


async def test_unknown_outcomes_resubmit_at_most_as_often_as_configured() -> None:
    runner = FakeCommandRunner()
    runner.on(SBATCH, CommandOutcomeUnknown("connection lost"))
    runner.on(FIND, "")
    with pytest.raises(CommandOutcomeUnknown, match="no tagged job found"):
        await cli(runner).submit("alice", "x", "j1")
    assert len(runner.calls_of("sbatch")) == 2 and len(runner.calls_of("squeue")) == 4
    never = FakeCommandRunner().on(SBATCH, CommandOutcomeUnknown("connection lost")).on(FIND, "")
    with pytest.raises(CommandOutcomeUnknown):
        once = SlurmCli(never, "bwvisu", lookup_attempts=1, lookup_delay=0, resubmits=0)
        await once.submit("alice", "x", "j1")
    assert len(never.calls_of("sbatch")) == 1


async def test_poll_is_one_squeue_for_all_jobs_and_keeps_only_ours() -> None:
    runner = FakeCommandRunner().on(["squeue", "**"], "1|RUNNING|None|cn0|alice|0|bwvisu-a\n"
                                                       "2|RUNNING|None|cn0|bob|0|someone-else\n")
    answer = await cli(runner).poll()
    assert [e.slurm_id for e in answer.entries] == ["1"]
    [call] = runner.calls
    assert call.argv[:4] == ["squeue", "--noheader", "--all", "--states=all"]


@pytest.mark.parametrize("result", [
    CommandResult(1, "", "slurm_load_jobs error: Unable to contact slurm controller"),
    CommandResult(0, "garbage\n", ""),
])
async def test_poll_errors_are_unavailable(result: CommandResult) -> None:
    with pytest.raises(SchedulerUnavailable):
        await cli(FakeCommandRunner().on(["squeue", "**"], result)).poll()


async def test_cancel_runs_scancel_as_the_user() -> None:
    runner = FakeCommandRunner().on(["sudo", "-n", "-u", "alice", "scancel", "17"], "")
    await cli(runner).cancel("alice", "17")
    assert len(runner.calls) == 1
    denied = FakeCommandRunner().on(["sudo", "**"], CommandResult(210, "", "Access/permission denied"))
    with pytest.raises(SchedulerError, match="permission"):
        await cli(denied).cancel("alice", "17")
    done = FakeCommandRunner().on(["sudo", "**"], CommandResult(
        1, "", "scancel: error: Kill job error on job id 17: Job/step already completing or completed"))
    await cli(done).cancel("alice", "17")  # already over: nothing to do


async def test_identify_asks_id_once_for_uid_and_groups() -> None:
    runner = FakeCommandRunner()
    runner.on(["id", "--", "alice"], "uid=1001(alice) gid=1001(alice) groups=1001(alice),2000(hpcusers)\n")
    runner.on(["id", "--", "carol"], "uid=1003(carol) gid=1003(carol) Gruppen=1003(carol)\n")
    runner.on(["id", "--", "mallory"], CommandResult(1, "", "id: 'mallory': no such user\n"))
    runner.on(["id", "--", "broken"], CommandResult(1, "", "something else"))
    runner.on(["id", "--", "odd"], "uid=oops\n")
    assert await cli(runner).identify("alice") == Identity("alice", 1001, frozenset({"alice", "hpcusers"}))
    assert await cli(runner).identify("carol") == Identity("carol", 1003, frozenset({"carol"}))
    assert await cli(runner).identify("mallory") is None
    for broken in ("broken", "odd"):
        with pytest.raises(SchedulerUnavailable):
            await cli(runner).identify(broken)


async def test_find_and_confirm_let_slurm_filter_by_name_and_user() -> None:
    runner = FakeCommandRunner()
    runner.on(["squeue", "**"], "4712\n")
    assert await cli(runner).find("j1", "alice") == "4712"
    assert "--users=alice" in runner.calls[-1].argv and "--name=bwvisu-j1" in runner.calls[-1].argv
    assert "--format=%i" in runner.calls[-1].argv  # ids only: no name is printed, none can forge one
    assert await cli(runner).confirm("4712", "alice", "j1") is True
    assert await cli(runner).confirm("4713", "alice", "j1") is False
    gone = FakeCommandRunner().on(["squeue", "**"], CommandResult(
        1, "", "slurm_load_jobs error: Invalid job id specified"))
    assert await cli(gone).confirm("4712", "alice", "j1") is False


async def test_examine_prints_no_names() -> None:
    runner = FakeCommandRunner().on(["squeue", "**"], "7|RUNNING|None|cn0|bob|0|\n")
    [entry] = await cli(runner).examine(["7"])
    assert (entry.slurm_id, entry.user, entry.lifecycle) == ("7", "bob", Lifecycle.RUNNING)
    assert ",Name" not in " ".join(runner.calls[0].argv) and "--jobs=7" in runner.calls[0].argv
    assert await cli(runner).examine([]) == [] and len(runner.calls) == 1
