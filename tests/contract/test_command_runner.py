"""One set of expectations for every CommandRunner: the scripted fake; AsyncSshRunner (minicluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bwvisu_common.settings import CommandNode, load_settings
from scheduler_adapter.adapters.ssh import AsyncSshRunner, asyncssh_connector
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.ports import CommandResult, CommandRunner
from tests.e2e.conftest import Minicluster, minicluster  # noqa: F401 (the fixture)
from tests.fakes.command_runner import FakeCommandRunner

HOSTILE = "a; b $(touch /tmp/pwned) `id` 'q' \"d\" | e > f"


class CommandRunnerContract:
    """What scheduler-adapter relies on from a CommandRunner."""

    @pytest.fixture
    async def runner(self) -> AsyncIterator[CommandRunner]:
        raise NotImplementedError
        yield

    @pytest.fixture
    async def dead_runner(self) -> AsyncIterator[CommandRunner]:
        raise NotImplementedError
        yield

    async def test_argv_reaches_the_program_verbatim(self, runner: CommandRunner) -> None:
        result = await runner.run(["echo", HOSTILE])
        assert (result.exit_status, result.stdout) == (0, HOSTILE + "\n")

    async def test_stdin_is_passed_through(self, runner: CommandRunner) -> None:
        script = "#!/bin/bash\necho 'hi'\n"
        result = await runner.run(["cat"], input=script, idempotent=False)
        assert (result.exit_status, result.stdout) == (0, script)

    async def test_exit_status_and_stderr_come_back(self, runner: CommandRunner) -> None:
        result = await runner.run(["sh", "-c", "echo oops >&2; exit 3"])
        assert (result.exit_status, result.stdout, result.stderr) == (3, "", "oops\n")

    async def test_a_missing_user_is_told_by_id(self, runner: CommandRunner) -> None:
        result = await runner.run(["id", "--", "mallory"])
        assert result.exit_status != 0 and "no such user" in result.stderr

    async def test_sudo_refuses_root(self, runner: CommandRunner) -> None:
        result = await runner.run(["sudo", "-n", "-u", "root", "id"])
        assert result.exit_status != 0 and "password is required" in result.stderr

    async def test_no_node_answering_is_unavailable(self, dead_runner: CommandRunner) -> None:
        with pytest.raises(SchedulerUnavailable):
            await dead_runner.run(["id", "--", "alice"])


def _echo(argv: list[str], input: str | None) -> CommandResult:
    return CommandResult(0, " ".join(argv[1:]) + "\n", "")


def _cat(argv: list[str], input: str | None) -> CommandResult:
    return CommandResult(0, input or "", "")


class TestFakeCommandRunner(CommandRunnerContract):
    @pytest.fixture
    async def runner(self) -> AsyncIterator[CommandRunner]:
        fake = FakeCommandRunner()
        fake.on(["echo", "**"], _echo).on(["cat"], _cat)
        fake.on(["sh", "-c", "echo oops >&2; exit 3"], CommandResult(3, "", "oops\n"))
        fake.on(["id", "--", "mallory"], CommandResult(1, "", "id: 'mallory': no such user\n"))
        fake.on(["sudo", "-n", "-u", "root", "**"], CommandResult(1, "", "sudo: a password is required\n"))
        yield fake

    @pytest.fixture
    async def dead_runner(self) -> AsyncIterator[CommandRunner]:
        yield FakeCommandRunner().on(["**"], SchedulerUnavailable("no command node answered"))


@pytest.mark.e2e
class TestAsyncSshRunner(CommandRunnerContract):
    @pytest.fixture
    async def runner(self, minicluster: Minicluster) -> AsyncIterator[CommandRunner]:  # noqa: F811
        real = AsyncSshRunner.from_settings(load_settings(minicluster.config_path))
        try:
            yield real
        finally:
            await real.close()

    @pytest.fixture
    async def dead_runner(self, minicluster: Minicluster) -> AsyncIterator[CommandRunner]:  # noqa: F811
        # Real addresses, ports where no sshd listens.
        nodes = [CommandNode(ip=minicluster.hosts[n], port=1, name=n) for n in minicluster.login_nodes]
        connector = asyncssh_connector(str(minicluster.key_file), str(minicluster.known_hosts), 3)
        real = AsyncSshRunner(nodes, connector, command_timeout=5)
        try:
            yield real
        finally:
            await real.close()
