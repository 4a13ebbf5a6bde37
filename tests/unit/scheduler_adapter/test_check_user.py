from __future__ import annotations

import msgspec

from bwvisu_common.rpc import CheckUser, CheckUserReply
from scheduler_adapter import check_user
from scheduler_adapter.adapters.fake import FakeCommandRunner
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.ports import CommandResult


async def reply(runner: FakeCommandRunner, request: bytes) -> CheckUserReply:
    answer = await check_user.answer(SlurmCli(runner), request)
    return msgspec.json.decode(answer, type=CheckUserReply)


def request(uid: str) -> bytes:
    return msgspec.json.encode(CheckUser(uid=uid))


async def test_existing_and_missing_users() -> None:
    runner = FakeCommandRunner()
    runner.on(["id", "--", "alice"], "uid=1001(alice)\n")
    runner.on(["id", "--", "mallory"], CommandResult(1, "", "id: 'mallory': no such user"))
    assert await reply(runner, request("alice")) == CheckUserReply(exists=True)
    assert await reply(runner, request("mallory")) == CheckUserReply(exists=False)


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
