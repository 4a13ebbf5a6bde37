from __future__ import annotations

import msgspec
import pytest

from bwvisu_common.rpc import CheckUser, CheckUserReply, JobLog, JobLogReply
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.domain.users import UserPolicy
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.handlers import QueryHandlers
from scheduler_adapter.ports import CommandResult
from scheduler_adapter.users import UserGate
from tests.fakes.command_runner import FakeCommandRunner, fake_id


async def reply(runner: FakeCommandRunner, request: bytes,
                policy: UserPolicy | None = None) -> CheckUserReply:
    scheduler = SlurmCli(runner)
    handlers = QueryHandlers(scheduler, UserGate(scheduler, policy or UserPolicy()), "/home/")
    return await handlers.check_user(request)


def request(uid: str) -> bytes:
    return msgspec.json.encode(CheckUser(uid=uid))


async def test_existing_and_missing_users() -> None:
    runner = FakeCommandRunner()
    runner.on(["id", "--", "alice"], "uid=1001(alice) gid=1001(alice) groups=1001(alice)\n")
    runner.on(["id", "--", "mallory"], CommandResult(1, "", "id: 'mallory': no such user"))
    assert await reply(runner, request("alice")) == CheckUserReply(exists=True)
    assert await reply(runner, request("mallory")) == CheckUserReply(
        exists=False, reason="no such user on the cluster: mallory")


@pytest.mark.parametrize(("uid", "reason"), [
    ("bwvisu", "bwvisu is the middleware's own account"),
    ("munge", "uid 101 of munge is below the site's minimum 1000"),
    ("nobody", "uid 65534 of nobody is above the site's maximum 60000"),
    ("daemon", "uid 1 of daemon is below the site's minimum 1000"),
    ("root", "root is the superuser"),
    ("alice", "alice is not a member of hpcusers"),
])
async def test_system_and_middleware_accounts_are_no_users(uid: str, reason: str) -> None:
    runner = FakeCommandRunner().on(["id", "--", "*"], fake_id({
        "bwvisu": (1500, ["bwvisu", "hpcusers"]), "munge": (101, ["munge", "hpcusers"]),
        "nobody": (65534, ["nogroup"]), "daemon": (1, ["daemon", "hpcusers"]), "root": (0, ["root"]),
        "alice": (1001, ["alice"]), "bob": (1002, ["bob", "hpcusers"])}))
    policy = UserPolicy(min_uid=1000, required_group="hpcusers", middleware_accounts={"bwvisu"})
    assert await reply(runner, request(uid), policy) == CheckUserReply(exists=False, reason=reason)
    assert await reply(runner, request("bob"), policy) == CheckUserReply(exists=True)


async def test_yes_is_remembered_briefly_and_no_is_not() -> None:
    now = [0.0]
    runner = FakeCommandRunner().on(["id", "--", "*"], fake_id({"alice": (1001, ["alice"]),
                                                                "munge": (101, ["munge"])}))
    gate = UserGate(SlurmCli(runner), UserPolicy(), clock=lambda: now[0], ttl=60)
    for _ in range(3):
        assert await gate.refusal("alice") is None
        assert await gate.refusal("munge") is not None
    assert len(runner.calls) == 4  # alice once, munge every time
    now[0] = 61.0
    assert await gate.refusal("alice") is None and len(runner.calls) == 5


async def test_impossible_names_never_reach_the_cluster() -> None:
    runner = FakeCommandRunner()
    assert await reply(runner, request("-rf")) == CheckUserReply(exists=False)
    assert await reply(runner, request("a b;c")) == CheckUserReply(exists=False)
    assert (await reply(runner, b"{not json")).error
    assert runner.calls == []


async def test_no_command_node_is_an_error_not_a_no() -> None:
    runner = FakeCommandRunner().on(["id", "**"], SchedulerUnavailable("no command node answered"))
    answer = await reply(runner, request("alice"))
    assert answer.exists is False and "cannot be reached" in answer.error


async def log_reply(runner: FakeCommandRunner, request: bytes) -> JobLogReply:
    scheduler = SlurmCli(runner)
    return await QueryHandlers(scheduler, UserGate(scheduler, UserPolicy()), "/home/").job_log(request)


async def test_the_job_log_is_read_as_its_user_from_the_jobs_output_file() -> None:
    runner = FakeCommandRunner()
    wanted = ["sudo", "-n", "-u", "alice", "tail", "-n", "20", "--", "/home/alice/bwvisu-job-abc123.out"]
    runner.on(wanted, "xpra is ready\n")
    req = msgspec.json.encode(JobLog(uid="alice", job_id="abc123", lines=20))
    assert await log_reply(runner, req) == JobLogReply(text="xpra is ready\n")
    assert [c.argv for c in runner.calls] == [wanted]


async def test_a_log_not_written_yet_is_empty_and_an_unreachable_cluster_an_error() -> None:
    runner = FakeCommandRunner()
    runner.on(["sudo", "**"], CommandResult(1, "", "tail: cannot open '/x': No such file or directory"))
    req = msgspec.json.encode(JobLog(uid="alice", job_id="abc", lines=5))
    assert await log_reply(runner, req) == JobLogReply(text="")
    down = FakeCommandRunner().on(["sudo", "**"], SchedulerUnavailable("no command node answered"))
    assert "cannot be reached" in (await log_reply(down, req)).error


async def test_job_log_requests_cannot_name_other_files() -> None:
    runner = FakeCommandRunner()
    for bad in (JobLog(uid="alice", job_id="../../etc/shadow"), JobLog(uid="al ice", job_id="a"),
                JobLog(uid="alice", job_id="a", lines=100_000)):
        assert (await log_reply(runner, msgspec.json.encode(bad))).error
    assert runner.calls == []
