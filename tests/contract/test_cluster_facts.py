"""One set of expectations for runner-api's ClusterFactsSource: the fake, and NatsClusterFacts answered
by scheduler-adapter's NeedsChecker over a real nats-server (the cluster behind it a FakeInventory,
held to the real `sinfo` and `command -v` in test_cluster_inventory.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bwvisu_common.adapters.jetstream import connect_nats
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.needs import ClusterFacts
from runner_api.adapters.nats_requests import NatsClusterFacts
from runner_api.ports import ClusterFactsSource
from scheduler_adapter import app_needs
from scheduler_adapter.app_needs import NeedsChecker
from tests.conftest import Server
from tests.fakes.cluster_facts import FakeClusterFacts
from tests.fakes.cluster_inventory import FakeInventory

PARTITIONS = {"debug": [], "gpu": ["gpu", "gpu:a100"]}
PROGRAMS = {"xpra"}
NEEDED = ["singularity", "xpra"]


@dataclass
class Setup:
    source: ClusterFactsSource
    go_down: Callable[[], None]


class ClusterFactsContract:
    @pytest.fixture
    async def setup(self) -> AsyncIterator[Setup]:
        raise NotImplementedError
        yield

    async def test_the_facts_say_what_the_cluster_has_of_what_the_apps_need(self, setup: Setup) -> None:
        facts = await setup.source.facts()
        assert facts.partitions == PARTITIONS
        assert facts.commands == {"singularity": False, "xpra": True}
        assert facts.commands_source == "login-node" and facts.slurm_error == facts.commands_error == ""

    async def test_what_could_not_be_checked_is_none_with_the_reason(self, setup: Setup) -> None:
        setup.go_down()
        facts = await setup.source.facts()
        assert facts.partitions is None and facts.commands is None
        assert facts.slurm_error and facts.commands_error


class TestFake(ClusterFactsContract):
    @pytest.fixture
    async def setup(self) -> AsyncIterator[Setup]:
        commands = {n: n in PROGRAMS for n in NEEDED}
        fake = FakeClusterFacts(ClusterFacts(partitions=PARTITIONS, commands=commands,
                                             commands_source="login-node"))

        def go_down() -> None:
            fake.facts_ = ClusterFacts(slurm_error="sinfo: no answer", commands_source="login-node",
                                       commands_error="no command node answered")

        yield Setup(fake, go_down)


@pytest.mark.integration
class TestNatsClusterFacts(ClusterFactsContract):
    @pytest.fixture
    async def setup(self, nats_server: Server, tmp_path: Path) -> AsyncIterator[Setup]:
        (tmp_path / "c.app.json").write_text(json.dumps({"title": "c", "template": "c",
                                                          "needs": {"commands": NEEDED}}))
        inventory = FakeInventory(PARTITIONS, PROGRAMS)
        now = [1e9]
        checker = NeedsChecker(inventory, tmp_path, interval=60, clock=lambda: now[0])
        server = await connect_nats([nats_server.url], "scheduler-adapter")
        client = await connect_nats([nats_server.url], "runner-api")
        subscription = await app_needs.serve(server, checker)
        await server.flush()
        await checker.check()

        def go_down() -> None:  # and stay down longer than an answer is passed on
            inventory.down = True
            now[0] += 3600

        try:
            yield Setup(NatsClusterFacts(client, timeout=5), go_down)
        finally:
            await subscription.unsubscribe()
            await client.drain()
            await server.drain()

    async def test_no_scheduler_adapter_running_is_unavailable(self, nats_server: Server) -> None:
        client = await connect_nats([nats_server.url], "runner-api")
        try:
            with pytest.raises(DependencyUnavailable):
                await NatsClusterFacts(client, timeout=2).facts()
        finally:
            await client.drain()
