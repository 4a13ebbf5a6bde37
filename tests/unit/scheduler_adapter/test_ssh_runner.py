"""AsyncSshRunner's failover with scripted sessions instead of sshd."""

from __future__ import annotations

import asyncio

import pytest

from bwvisu_common.settings import CommandNode
from scheduler_adapter.adapters.ssh import AsyncSshRunner, Lost, NotSent, Session
from scheduler_adapter.errors import CommandOutcomeUnknown, SchedulerUnavailable
from scheduler_adapter.ports import CommandResult

NODES = [CommandNode(ip="10.0.0.1", name="login0"), CommandNode(ip="10.0.0.2", name="login1")]


class FakeSession:
    def __init__(self, cluster: FakeCluster, name: str) -> None:
        self.cluster, self.name, self.open = cluster, name, True

    async def exec(self, command: str, input: str | None, timeout: float) -> CommandResult:
        self.cluster.commands.append((self.name, command, input))
        failure = self.cluster.exec_failure.get(self.name)
        if failure is not None:
            raise failure
        return CommandResult(0, f"{self.name}: {command}", "", self.name)

    def alive(self) -> bool:
        return self.open and self.name not in self.cluster.down

    def close(self) -> None:
        self.open = False


class FakeCluster:
    def __init__(self) -> None:
        self.down: set[str] = set()
        self.exec_failure: dict[str, Exception] = {}
        self.connects: list[str] = []
        self.commands: list[tuple[str, str, str | None]] = []

    async def connect(self, node: CommandNode) -> Session:
        self.connects.append(node.label)
        if node.label in self.down:
            raise OSError(f"connection refused by {node.label}")
        return FakeSession(self, node.label)


def runner(cluster: FakeCluster) -> AsyncSshRunner:
    return AsyncSshRunner(NODES, cluster.connect, command_timeout=5, probe_interval=0.01)


async def test_one_persistent_connection_per_node_and_argv_quoted_at_the_edge() -> None:
    cluster = FakeCluster()
    r = runner(cluster)
    for _ in range(3):
        result = await r.run(["echo", "a; b $(x)"], input="in")
    assert result.stdout == "login0: echo 'a; b $(x)'"
    assert cluster.connects == ["login0"]
    assert cluster.commands[-1][2] == "in"
    await r.close()


async def test_a_dead_first_node_fails_over_to_the_second_and_comes_back() -> None:
    cluster = FakeCluster()
    cluster.down.add("login0")
    r = runner(cluster)
    result = await r.run(["squeue"])
    assert result.node == "login1" and r.down_nodes() == ["login0"]
    await r.run(["squeue"])
    assert cluster.connects.count("login0") == 1  # not retried inline: the probe does that
    cluster.down.clear()
    for _ in range(100):
        if not r.down_nodes():
            break
        await asyncio.sleep(0.01)
    assert r.down_nodes() == []
    assert (await r.run(["squeue"])).node == "login0"
    await r.close()


async def test_all_nodes_down_is_unavailable_quickly() -> None:
    cluster = FakeCluster()
    cluster.down.update({"login0", "login1"})
    r = runner(cluster)
    with pytest.raises(SchedulerUnavailable, match="login0.*login1"):
        await r.run(["id", "alice"])
    with pytest.raises(SchedulerUnavailable, match="down"):
        await r.run(["id", "alice"])
    await r.close()


async def test_a_lost_connection_retries_idempotent_commands_elsewhere() -> None:
    cluster = FakeCluster()
    cluster.exec_failure["login0"] = Lost("connection reset")
    r = runner(cluster)
    assert (await r.run(["squeue"])).node == "login1"
    await r.close()


async def test_a_lost_connection_after_sbatch_is_an_unknown_outcome_not_a_retry() -> None:
    cluster = FakeCluster()
    cluster.exec_failure["login0"] = Lost("connection reset")
    r = runner(cluster)
    with pytest.raises(CommandOutcomeUnknown):
        await r.run(["sbatch", "--parsable"], input="#!/bin/bash\n", idempotent=False)
    assert [c[0] for c in cluster.commands] == ["login0"]
    await r.close()


async def test_a_session_that_cannot_open_is_not_sent_and_safe_to_retry() -> None:
    cluster = FakeCluster()
    cluster.exec_failure["login0"] = NotSent("channel open failed")
    r = runner(cluster)
    result = await r.run(["sbatch"], input="x", idempotent=False)
    assert result.node == "login1"
    await r.close()
