from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from bwvisu_common import events as ev
from bwvisu_common.read_model import JobView, fold
from bwvisu_common.state_keys import session_secret_key, token_key
from bwvisu_common.templates import FileTemplates
from scheduler_adapter.adapters.slurm import PRIVATE_UMASK, SlurmCli
from scheduler_adapter.domain.render import SubmitConfig
from scheduler_adapter.domain.secrets import token_ttl
from scheduler_adapter.domain.users import UserPolicy
from scheduler_adapter.errors import CommandOutcomeUnknown, SchedulerUnavailable
from scheduler_adapter.handlers import JobHandlers
from scheduler_adapter.ports import CommandResult
from scheduler_adapter.users import UserGate
from tests.fakes.command_runner import FakeCommandRunner, fake_id
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.state_store import InMemoryStateStore

SBATCH = [*PRIVATE_UMASK, "sudo", "-n", "-u", "*", "sbatch", "**"]
USERS: dict[str, tuple[int, list[str]]] = {"alice": (1001, ["alice"]), "bob": (1002, ["bob"]),
                                           "bwvisu": (1500, ["bwvisu"]), "munge": (101, ["munge"])}
TEMPLATE = "#!/bin/bash\n#SBATCH --output={{log_path}}\n#KEYHOLE-REQUEST-PORTS 1\nsleep {{seconds}}\n"


class World:
    def __init__(self, tmp: Path) -> None:
        (tmp / "sleep.sh.mustache").write_text(TEMPLATE)
        (tmp / "twice.sh.mustache").write_text("#KEYHOLE-REQUEST-PORTS 1\n#KEYHOLE-REQUEST-PORTS 1\n")
        (tmp / "plain.sh.mustache").write_text("#!/bin/bash\nsleep {{seconds}}\n")
        self.events = InMemoryEventStore()
        self.state = InMemoryStateStore()
        self.runner = FakeCommandRunner().on(["id", "--", "*"], fake_id(USERS))
        slurm = SlurmCli(self.runner, "bwvisu", lookup_attempts=1)
        self.handlers = JobHandlers(
            self.events, self.state, slurm,
            FileTemplates(tmp), SubmitConfig(home_prefix="/home", keyhole_servers=["http://k:4243"]),
            users=UserGate(slurm, UserPolicy(middleware_accounts={"bwvisu"})))

    async def submit(self, job_id: str = "j1", uid: str = "alice", template: str = "sleep",
                     **variables: str) -> ev.JobSubmitted:
        event = ev.JobSubmitted(job_id=job_id, uid=uid, template_name=template,
                                variables=variables or {"seconds": "5"})
        seq = await self.events.append([event])
        await self.handlers.handle(seq, event)
        return event

    async def log(self, job_id: str = "j1") -> list[ev.AnyEvent]:
        return [e for _, e in await self.events.read_job(job_id)]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def test_submit_renders_stores_a_token_and_records_the_slurm_id(world: World) -> None:
    world.runner.on(SBATCH, "4711\n")
    await world.submit()
    log = await world.log()
    assert [type(e).__name__ for e in log] == ["JobSubmitted", "JobQueued"]
    assert isinstance(log[1], ev.JobQueued) and log[1].slurm_id == "4711"
    token = await world.state.get_secret(token_key("j1"))
    assert token is not None and re.fullmatch(rb"[0-9a-f]{64}", token), token
    [call] = world.runner.calls_of("sbatch")
    assert call.input is not None
    assert "#SBATCH --output=/home/alice/bwvisu-job-j1.out" in call.input and "sleep 5" in call.input
    assert token.decode() in call.input  # the job gets its token in the script...
    assert all(token.decode() not in repr(e) for e in log)  # ...and the log never does


async def test_handling_twice_submits_once(world: World) -> None:
    world.runner.on(SBATCH, "4711\n")
    event = await world.submit()
    await world.handlers.handle(1, event)
    assert len(world.runner.calls_of("sbatch")) == 1
    assert len(await world.log()) == 2


@pytest.mark.parametrize(("template", "variables", "reason"), [
    ("nope", {"seconds": "1"}, "no such template: nope"),
    ("sleep", {"other": "1"}, "seconds"),
    ("twice", {"seconds": "1"}, "appears 2 times"),
    ("sleep", {"seconds": "$(reboot)"}, "variables.seconds"),
    ("../sleep", {"seconds": "1"}, "template-name"),
])
async def test_bad_templates_and_variables_fail_without_sbatch(
    world: World, template: str, variables: dict[str, str], reason: str
) -> None:
    await world.submit(template=template, **variables)
    failed = (await world.log())[-1]
    assert isinstance(failed, ev.JobSubmitFailed) and failed.kind == "rejected"
    assert reason in failed.reason
    assert world.runner.calls == []


@pytest.mark.parametrize(("outcome", "kind"), [
    (CommandResult(1, "", "sudo: unknown user mallory"), "unknown-user"),
    (CommandResult(1, "", "sbatch: error: Batch job submission failed: Invalid partition name"), "rejected"),
    (SchedulerUnavailable("no command node answered"), "unavailable"),
])
async def test_sbatch_failures_become_submit_failed_events(world: World, outcome: object, kind: str) -> None:
    world.runner.on(SBATCH, outcome)  # type: ignore[arg-type]
    await world.submit(uid="bob")
    failed = (await world.log())[-1]
    assert isinstance(failed, ev.JobSubmitFailed) and failed.kind == kind
    await world.handlers.handle(3, failed)
    assert await world.state.get_secret(token_key("j1")) is None  # no token outlives the job


async def test_a_redelivery_after_a_crash_finds_the_job_instead_of_submitting_again(world: World) -> None:
    # The first attempt stored the token and reached sbatch, then the process died.
    await world.state.put_secret(token_key("j1"), b"a" * 64, 3600)
    world.runner.on(["squeue", "**"], "4711\n")
    await world.submit()
    assert world.runner.calls_of("sbatch") == []
    queued = (await world.log())[-1]
    assert isinstance(queued, ev.JobQueued) and queued.slurm_id == "4711"


async def test_an_unknown_outcome_that_slurm_cannot_resolve_fails_as_unavailable(world: World) -> None:
    world.runner.on(SBATCH, CommandOutcomeUnknown("connection lost"))
    world.runner.on(["squeue", "**"], SchedulerUnavailable("no command node answered"))
    await world.submit()
    failed = (await world.log())[-1]
    assert isinstance(failed, ev.JobSubmitFailed) and failed.kind == "unavailable"
    assert len(world.runner.calls_of("sbatch")) == 1


async def test_an_unknown_outcome_with_no_job_in_slurm_is_never_submitted_a_second_time(world: World) -> None:
    # An sbatch still retrying against a busy controller may reach Slurm after every lookup:
    # the job fails as unavailable (the person submits again) rather than run twice.
    world.runner.on(SBATCH, CommandOutcomeUnknown("connection lost"), times=1)
    world.runner.on(SBATCH, CommandResult(0, "4714\n", "", "login1"))
    world.runner.on(["squeue", "**"], "")
    await world.submit()
    failed = (await world.log())[-1]
    assert isinstance(failed, ev.JobSubmitFailed) and failed.kind == "unavailable"
    assert len(world.runner.calls_of("sbatch")) == 1


async def test_an_unknown_outcome_adopts_the_tagged_job_instead_of_a_second_one(world: World) -> None:
    world.runner.on(SBATCH, CommandOutcomeUnknown("connection lost"))
    world.runner.on(["squeue", "**"], "4715\n")
    await world.submit()
    queued = (await world.log())[-1]
    assert isinstance(queued, ev.JobQueued) and queued.slurm_id == "4715"
    assert len(world.runner.calls_of("sbatch")) == 1


async def test_a_stale_submission_is_refused(world: World) -> None:
    event = ev.JobSubmitted(job_id="j1", uid="alice", template_name="sleep", variables={"seconds": "1"},
                            time=ev.utcnow() - timedelta(hours=1))
    await world.handlers.handle(await world.events.append([event]), event)
    assert isinstance((await world.log())[-1], ev.JobSubmitFailed)
    assert world.runner.calls == []


async def test_an_event_appended_meanwhile_does_not_lose_the_decision(world: World) -> None:
    async def racing(argv: list[str], input: str | None) -> CommandResult:
        # The watcher notes something about the job while sbatch runs.
        await world.events.append([ev.JobDetailsChanged(job_id="j1", details="x")])
        return CommandResult(0, "4711\n", "")

    world.runner.on(SBATCH, racing)
    await world.submit()
    assert isinstance((await world.log())[-1], ev.JobQueued)


async def test_cancel_runs_scancel_as_the_owner_and_skips_finished_jobs(world: World) -> None:
    world.runner.on(SBATCH, "4711\n").on(["sudo", "-n", "-u", "alice", "scancel", "4711"], "")
    await world.submit()
    cancel = ev.JobCancelRequested(job_id="j1")
    await world.handlers.handle(await world.events.append([cancel]), cancel)
    assert len(world.runner.calls_of("scancel")) == 1
    await world.events.append([ev.JobEnded(job_id="j1", slurm_state="CANCELLED")])
    await world.handlers.handle(9, cancel)
    assert len(world.runner.calls_of("scancel")) == 1


async def test_a_cancel_before_submission_means_no_submission(world: World) -> None:
    event = ev.JobSubmitted(job_id="j1", uid="alice", template_name="sleep", variables={"seconds": "1"})
    await world.events.append([event, ev.JobCancelRequested(job_id="j1")])
    await world.handlers.handle(1, event)
    view = fold(await world.events.read_job("j1"))
    assert view is not None and view.state == "finished" and world.runner.calls == []


async def test_job_ended_deletes_the_token(world: World) -> None:
    world.runner.on(SBATCH, "4711\n")
    await world.submit()
    ended = ev.JobEnded(job_id="j1", slurm_state="COMPLETED", exit_code=0)
    await world.handlers.handle(await world.events.append([ended]), ended)
    assert await world.state.get_secret(token_key("j1")) is None


def test_token_lifetime_follows_the_runtime() -> None:
    assert token_ttl({"runtime": "60"}) == token_ttl({}) + 3600
    assert token_ttl({"runtime": "junk"}) == token_ttl({})


@pytest.mark.parametrize(("uid", "why"), [
    ("bwvisu", "the middleware's own account"),
    ("munge", "uid 101 of munge is below the site's minimum 1000"),
    ("mallory", "no such user on the cluster: mallory"),
])
async def test_no_system_or_middleware_account_reaches_sbatch(world: World, uid: str, why: str) -> None:
    world.runner.on(SBATCH, "4711\n")
    await world.submit(uid=uid)
    failed = (await world.log())[-1]
    assert isinstance(failed, ev.JobSubmitFailed) and failed.kind == "unknown-user"
    assert why in failed.reason
    assert world.runner.calls_of("sbatch") == []


async def test_a_job_with_ports_gets_its_own_session_secret_in_its_script_only(world: World) -> None:
    world.runner.on(SBATCH, "4711\n")
    await world.submit("j1")
    await world.submit("j2")
    first = await world.state.get_secret(session_secret_key("j1"))
    second = await world.state.get_secret(session_secret_key("j2"))
    assert first is not None and second is not None and first != second and len(first) == 64
    assert first != await world.state.get_secret(token_key("j1")), "not the keyhole token"
    script = world.runner.calls_of("sbatch")[0].input or ""
    # One line, inside the keyhole client's stdin heredoc: no command line, no variable set by hand.
    assert [line for line in script.splitlines() if first.decode() in line] == [first.decode()]
    assert all(first.decode() not in repr(e) for e in await world.log("j1"))


async def test_a_job_without_ports_has_no_session_secret(world: World) -> None:
    world.runner.on(SBATCH, "4711\n")
    await world.submit(template="plain")
    assert await world.state.get_secret(session_secret_key("j1")) is None
    assert await world.state.get_secret(token_key("j1")) is not None


async def test_a_retried_submit_renders_the_secrets_it_stored_first(world: World) -> None:
    await world.state.put_secret(token_key("j1"), b"a" * 64, 3600)
    await world.state.put_secret(session_secret_key("j1"), b"b" * 64, 3600)
    world.runner.on(["squeue", "**"], "")
    world.runner.on(["sudo", "-n", "-u", "*", "squeue", "**"], "")
    world.runner.on(SBATCH, "4711\n")
    await world.submit()
    script = world.runner.calls_of("sbatch")[0].input or ""
    assert "a" * 64 in script and "b" * 64 in script


@pytest.mark.parametrize("end", [
    ev.JobEnded(job_id="j1", slurm_state="CANCELLED", exit_code=0),
    ev.JobSubmitFailed(job_id="j1", reason="no", kind="rejected"),
])
async def test_the_end_of_a_job_deletes_its_token_and_session_secret(world: World, end: ev.Event) -> None:
    world.runner.on(SBATCH, "4711\n")
    await world.submit()
    assert await world.state.get_secret(session_secret_key("j1")) is not None
    await world.handlers.handle(await world.events.append([end]), end)  # type: ignore[arg-type]
    assert await world.state.secret_names() == []


async def test_the_start_up_sweep_deletes_only_the_secrets_of_finished_jobs(world: World) -> None:
    for job_id in ("done", "running", "unknown"):
        await world.state.put_secret(token_key(job_id), b"t" * 64, 3600)
        await world.state.put_secret(session_secret_key(job_id), b"s" * 64, 3600)
    views = [JobView(job_id="done", state="finished"), JobView(job_id="running", state="running")]
    assert await world.handlers.sweep_secrets(views) == 2
    assert await world.state.secret_names() == [
        "session/running", "session/unknown", "token/running", "token/unknown"]


async def test_a_cancel_takes_the_slurm_id_from_the_read_model_and_reads_the_log_only_when_it_lags(
    world: World,
) -> None:
    world.runner.on(SBATCH, "4711\n").on(["sudo", "-n", "-u", "alice", "scancel", "4711"], "")
    await world.submit()
    known = fold(await world.events.read_job("j1"))
    reads: list[str] = []
    real_read = world.events.read_job

    async def counted(job_id: str, from_seq: int = 1) -> list[tuple[int, ev.AnyEvent]]:
        reads.append(job_id)
        return await real_read(job_id, from_seq)

    world.events.read_job = counted  # type: ignore[method-assign]
    lagging: dict[str, object] = {"j1": None}
    world.handlers._known = lambda job_id: known if lagging["j1"] is None else None  # type: ignore[assignment]
    cancel = ev.JobCancelRequested(job_id="j1")
    await world.handlers.handle(await world.events.append([cancel]), cancel)
    assert reads == [] and len(world.runner.calls_of("scancel")) == 1
    lagging["j1"] = "behind"  # the read model has not seen the job yet: the log is read
    await world.handlers.handle(9, cancel)
    assert reads == ["j1"] and len(world.runner.calls_of("scancel")) == 2
