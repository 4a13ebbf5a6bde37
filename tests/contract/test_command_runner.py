"""One set of expectations for every CommandRunner: FakeCommandRunner running real programs here,
AsyncSshRunner against an sshd this module starts on loopback, and against the minicluster."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bwvisu_cli.servers import free_port, wait_listening
from bwvisu_common.settings import CommandNode, load_settings
from scheduler_adapter.adapters.ssh import AsyncSshRunner, asyncssh_connector
from scheduler_adapter.errors import CommandOutcomeUnknown, SchedulerUnavailable
from scheduler_adapter.ports import CommandRunner
from tests.e2e.conftest import Minicluster, minicluster  # noqa: F401 (the fixture)
from tests.fakes.command_runner import FakeCommandRunner, run_here

HOSTILE = "a; b $(touch /tmp/pwned) `id` 'q' \"d\" | e > f"
TIMEOUT = 2.0  # every runner under test gives up on a command after this long


class CommandRunnerContract:
    """What scheduler-adapter relies on from a CommandRunner, whatever runs the commands."""

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
        assert (result.exit_status, result.stdout, result.stderr) == (0, HOSTILE + "\n", "")

    async def test_stdin_is_passed_through(self, runner: CommandRunner) -> None:
        script = f"#!/bin/bash\necho 'hi {uuid.uuid4().hex}'\n"
        result = await runner.run(["cat"], input=script, idempotent=False)
        assert (result.exit_status, result.stdout) == (0, script)

    async def test_exit_status_stdout_and_stderr_come_back_apart(self, runner: CommandRunner) -> None:
        result = await runner.run(["sh", "-c", 'echo out; echo "$1" >&2; exit "$2"', "sh", "oops", "3"])
        assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "oops\n")

    async def test_a_missing_program_is_an_exit_status_not_an_exception(self, runner: CommandRunner) -> None:
        result = await runner.run([f"no-such-program-{uuid.uuid4().hex[:8]}"])
        assert result.exit_status == 127 and "not found" in result.stderr, result

    async def test_a_missing_user_is_told_by_id(self, runner: CommandRunner) -> None:
        result = await runner.run(["id", "--", f"nobody-{uuid.uuid4().hex[:8]}"])
        assert result.exit_status != 0 and "no such user" in result.stderr, result

    async def test_every_result_names_the_node_that_ran_it(self, runner: CommandRunner) -> None:
        assert (await runner.run(["true"])).node != ""

    async def test_a_command_outliving_the_timeout_is_unavailable(self, runner: CommandRunner) -> None:
        with pytest.raises(SchedulerUnavailable):
            await runner.run(["sleep", str(TIMEOUT * 3)])

    async def test_an_unsafe_command_outliving_the_timeout_has_an_unknown_outcome(
        self, runner: CommandRunner
    ) -> None:
        with pytest.raises(CommandOutcomeUnknown):
            await runner.run(["sleep", str(TIMEOUT * 3)], idempotent=False)

    async def test_no_node_answering_is_unavailable(self, dead_runner: CommandRunner) -> None:
        with pytest.raises(SchedulerUnavailable):
            await dead_runner.run(["id", "--", "alice"])


class TestFakeCommandRunner(CommandRunnerContract):
    @pytest.fixture
    async def runner(self) -> AsyncIterator[CommandRunner]:
        yield FakeCommandRunner(command_timeout=TIMEOUT).on(["**"], run_here)

    @pytest.fixture
    async def dead_runner(self) -> AsyncIterator[CommandRunner]:
        yield FakeCommandRunner(down=True).on(["**"], run_here)


@dataclass(frozen=True)
class Sshd:
    node: CommandNode
    key_file: Path
    known_hosts: Path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """An sshd on a free loopback port that lets this user in with a key made for the test only."""
    if shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists():
        pytest.skip("no sshd on this machine")
    base = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    port, user = free_port(), getpass.getuser()
    (base / "known_hosts").write_text(f"[127.0.0.1]:{port} {(base / 'host_key.pub').read_text()}")
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\nPidFile {base / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nAllowUsers {user}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    log = (base / "sshd.log").open("wb")
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(base / "sshd_config")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening("127.0.0.1", port, "sshd", alive=lambda: proc.poll() is None)
    except Exception:
        proc.kill()
        raise RuntimeError(f"sshd did not start:\n{(base / 'sshd.log').read_text()[-2000:]}") from None
    yield Sshd(CommandNode(ip="127.0.0.1", port=port, user=user, name="local"),
               base / "client_key", base / "known_hosts")
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.integration
class TestAsyncSshRunnerOnLoopback(CommandRunnerContract):
    @pytest.fixture
    async def runner(self, sshd: Sshd) -> AsyncIterator[CommandRunner]:
        connector = asyncssh_connector(str(sshd.key_file), str(sshd.known_hosts), 5)
        real = AsyncSshRunner([sshd.node], connector, command_timeout=TIMEOUT)
        try:
            yield real
        finally:
            await real.close()

    @pytest.fixture
    async def dead_runner(self, sshd: Sshd) -> AsyncIterator[CommandRunner]:
        nobody = CommandNode(ip="127.0.0.1", port=free_port(), user=sshd.node.user, name="gone")
        connector = asyncssh_connector(str(sshd.key_file), str(sshd.known_hosts), 5)
        real = AsyncSshRunner([nobody], connector, command_timeout=TIMEOUT)
        try:
            yield real
        finally:
            await real.close()


@pytest.mark.e2e
class TestAsyncSshRunnerOnTheMinicluster(CommandRunnerContract):
    @pytest.fixture
    async def runner(self, minicluster: Minicluster) -> AsyncIterator[CommandRunner]:  # noqa: F811
        settings = load_settings(minicluster.config_path)
        connector = asyncssh_connector(settings.ssh.key_file, settings.ssh.known_hosts, 5)
        real = AsyncSshRunner(settings.command_nodes, connector, command_timeout=TIMEOUT)
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

    async def test_sudo_refuses_root(self, runner: CommandRunner) -> None:
        """The cluster's sudoers, as bwvisu's account sees them: any user but root."""
        result = await runner.run(["sudo", "-n", "-u", "root", "id"])
        assert result.exit_status != 0 and "password is required" in result.stderr
