"""The programs unit tests script (fake_id, fake_tail) answer as `id` and `tail` do: SlurmCli reads
the same from either, here over FakeCommandRunner, once scripted and once running the real ones."""

from __future__ import annotations

import getpass
import grp
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.domain.users import Identity
from tests.fakes.command_runner import FakeCommandRunner, fake_id, fake_tail, run_here

ME = getpass.getuser()


def my_identity() -> Identity:
    gids = os.getgrouplist(ME, os.getgid())
    return Identity(name=ME, uid=os.getuid(), groups=frozenset(grp.getgrgid(g).gr_name for g in gids))


class ScriptedProgramsContract:
    @pytest.fixture
    def cli(self, tmp_path: Path) -> SlurmCli:  # pragma: no cover - overridden
        raise NotImplementedError

    def write(self, path: Path, text: str) -> None:
        raise NotImplementedError

    async def test_id_tells_a_users_uid_and_groups(self, cli: SlurmCli) -> None:
        assert await cli.identify(ME) == my_identity()

    async def test_id_tells_there_is_no_such_user(self, cli: SlurmCli) -> None:
        assert await cli.identify(f"nobody-{uuid.uuid4().hex[:8]}") is None

    async def test_tail_gives_the_last_lines(self, cli: SlurmCli, tmp_path: Path) -> None:
        self.write(tmp_path / "job.out", "one\ntwo\nthree\n")
        assert await cli.read_log(ME, str(tmp_path / "job.out"), 2) == "two\nthree\n"

    async def test_tail_of_a_file_not_written_yet_is_empty(self, cli: SlurmCli, tmp_path: Path) -> None:
        assert await cli.read_log(ME, str(tmp_path / "not-yet.out"), 2) == ""


class TestScripted(ScriptedProgramsContract):
    files: dict[str, str]

    @pytest.fixture
    def cli(self, tmp_path: Path) -> SlurmCli:
        me = my_identity()
        primary = grp.getgrgid(os.getgid()).gr_name
        self.files = {}
        runner = FakeCommandRunner().on(["id", "--", "*"], fake_id(
            {ME: (me.uid, [primary, *sorted(me.groups - {primary})])}))
        runner.on(["sudo", "-n", "-u", "*", "tail", "**"], fake_tail(self.files))
        return SlurmCli(runner)

    def write(self, path: Path, text: str) -> None:
        self.files[str(path)] = text


class TestRealPrograms(ScriptedProgramsContract):
    @pytest.fixture
    def cli(self, tmp_path: Path) -> SlurmCli:
        sudo = shutil.which("sudo")
        if sudo is None or subprocess.run([sudo, "-n", "-u", ME, "true"], capture_output=True).returncode:
            pytest.skip(f"sudo may not run commands as {ME} without a password here")
        return SlurmCli(FakeCommandRunner().on(["**"], run_here))

    def write(self, path: Path, text: str) -> None:
        path.write_text(text)
