"""One set of expectations for scheduler-adapter's ClusterInventory: FakeInventory set up as the
minicluster is, and SinfoInventory asking the minicluster's login nodes over SSH (real `sinfo`, real
`command -v`). The minicluster has one partition, `debug`, no gres, and no Singularity: the
demo's "Visualization container" cannot run there, while its Xpra desktop can."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from bwvisu_common.settings import CommandNode, load_settings
from scheduler_adapter.adapters.inventory import SinfoInventory
from scheduler_adapter.adapters.ssh import AsyncSshRunner, asyncssh_connector
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.ports import ClusterInventory
from tests.contract.test_command_runner import Sshd, sshd  # noqa: F401 (the fixture)
from tests.e2e.conftest import Minicluster, minicluster  # noqa: F401 (the fixture)
from tests.fakes.cluster_inventory import FakeInventory

PROGRAMS = ["sh", "xpra", "Xvfb", "xterm"]  # what the minicluster's nodes have (Debian's packages)
STRANGER = f"no-such-program-{uuid.uuid4().hex[:8]}"


class ClusterInventoryContract:
    @pytest.fixture
    async def inventory(self) -> AsyncIterator[ClusterInventory]:
        raise NotImplementedError
        yield

    @pytest.fixture
    async def dead_inventory(self) -> AsyncIterator[ClusterInventory]:
        raise NotImplementedError
        yield

    async def test_the_partition_is_listed_without_gres(self, inventory: ClusterInventory) -> None:
        assert await inventory.partitions() == {"debug": []}

    async def test_programs_on_path_are_found_singularity_is_not(self, inventory: ClusterInventory) -> None:
        found = await inventory.commands([*PROGRAMS, "singularity", STRANGER])
        assert found == {**dict.fromkeys(PROGRAMS, True), "singularity": False, STRANGER: False}

    async def test_a_shell_builtin_is_no_program(self, inventory: ClusterInventory) -> None:
        assert await inventory.commands(["cd", "command"]) == {"cd": False, "command": False}

    async def test_asking_for_no_command_is_no_question(self, inventory: ClusterInventory) -> None:
        assert await inventory.commands([]) == {}

    async def test_no_login_node_answering_is_unavailable(self, dead_inventory: ClusterInventory) -> None:
        with pytest.raises(SchedulerUnavailable):
            await dead_inventory.partitions()
        with pytest.raises(SchedulerUnavailable):
            await dead_inventory.commands(["sh"])


class TestFakeInventory(ClusterInventoryContract):
    @pytest.fixture
    async def inventory(self) -> AsyncIterator[ClusterInventory]:
        yield FakeInventory({"debug": []}, PROGRAMS)

    @pytest.fixture
    async def dead_inventory(self) -> AsyncIterator[ClusterInventory]:
        fake = FakeInventory({"debug": []}, PROGRAMS)
        fake.down = True
        yield fake


@pytest.mark.e2e
class TestSinfoInventoryOnTheMinicluster(ClusterInventoryContract):
    @pytest.fixture
    async def inventory(self, minicluster: Minicluster) -> AsyncIterator[ClusterInventory]:  # noqa: F811
        settings = load_settings(minicluster.config_path)
        connector = asyncssh_connector(settings.ssh.key_file, settings.ssh.known_hosts, 5)
        runner = AsyncSshRunner(settings.command_nodes, connector, command_timeout=20)
        try:
            yield SinfoInventory(runner)
        finally:
            await runner.close()

    @pytest.fixture
    async def dead_inventory(self, minicluster: Minicluster) -> AsyncIterator[ClusterInventory]:  # noqa: F811
        nodes = [CommandNode(ip=minicluster.hosts[n], port=1, name=n) for n in minicluster.login_nodes]
        connector = asyncssh_connector(str(minicluster.key_file), str(minicluster.known_hosts), 3)
        runner = AsyncSshRunner(nodes, connector, command_timeout=5)
        try:
            yield SinfoInventory(runner)
        finally:
            await runner.close()


@pytest.mark.integration
async def test_the_probe_over_ssh_finds_what_this_host_has(sshd: Sshd) -> None:  # noqa: F811
    """The same probe through a real sshd and the account's login shell, on loopback."""
    connector = asyncssh_connector(str(sshd.key_file), str(sshd.known_hosts), 5)
    runner = AsyncSshRunner([sshd.node], connector, command_timeout=10)
    try:
        found = await SinfoInventory(runner).commands(["sh", "ls", "cd", STRANGER])
    finally:
        await runner.close()
    assert found == {"sh": True, "ls": True, "cd": False, STRANGER: False}
