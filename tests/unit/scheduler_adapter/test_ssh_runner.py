"""AsyncSshRunner's failover with scripted sessions instead of sshd."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from collections.abc import Callable

import pytest

from bwvisu_common.settings import CommandNode
from scheduler_adapter.adapters.ssh import AsyncSshRunner, Lost, NotSent, Running, Session, shell_command
from scheduler_adapter.errors import CommandOutcomeUnknown, SchedulerUnavailable
from scheduler_adapter.ports import CommandResult
from tests.samples import sample

NODES = [CommandNode(ip="10.0.0.1", name="login0"), CommandNode(ip="10.0.0.2", name="login1")]


class FakeRunning:
    def __init__(self, result: CommandResult, failure: Exception | None) -> None:
        self.result, self.failure = result, failure

    async def wait(self, timeout: float) -> CommandResult:
        if self.failure is not None:
            raise self.failure
        return self.result


class FakeSession:
    def __init__(self, cluster: FakeCluster, name: str) -> None:
        self.cluster, self.name, self.open = cluster, name, True

    async def start(self, command: str, input: str | None) -> Running:
        if self.name in self.cluster.silent:
            await asyncio.Event().wait()  # its link is down: the channel is never confirmed
        self.cluster.commands.append((self.name, command, input))
        self.cluster.running[self.name] = self.cluster.running.get(self.name, 0) + 1
        self.cluster.most = max(self.cluster.most, sum(self.cluster.running.values()))
        try:
            if command.startswith("hold"):
                await self.cluster.held.wait()
        finally:
            self.cluster.running[self.name] -= 1
        failure = self.cluster.exec_failure.get(self.name)
        if isinstance(failure, NotSent):
            raise failure
        return FakeRunning(CommandResult(0, f"{self.name}: {command}", "", self.name), failure)

    def alive(self) -> bool:
        return self.open and self.name not in self.cluster.down and self.name not in self.cluster.gone

    def unanswered(self) -> str | None:
        return "Server not responding to keepalive" if self.open and self.name in self.cluster.gone else None

    def close(self) -> None:
        self.open = False


class FakeCluster:
    def __init__(self) -> None:
        self.down: set[str] = set()
        self.silent: set[str] = set()  # connected, but nothing comes back any more
        self.gone: set[str] = set()  # its keepalives went unanswered: the connection closed
        self.exec_failure: dict[str, Exception] = {}
        self.connects: list[str] = []
        self.opened: list[FakeSession] = []
        self.commands: list[tuple[str, str, str | None]] = []
        self.held = asyncio.Event()  # `hold ...` commands run until this is set
        self.running: dict[str, int] = {}
        self.most = 0  # the most commands running at once

    async def connect(self, node: CommandNode) -> Session:
        self.connects.append(node.label)
        if node.label in self.down:
            raise OSError(f"connection refused by {node.label}")
        session = FakeSession(self, node.label)
        self.opened.append(session)
        return session


def runner(cluster: FakeCluster, answer_timeout: float = 3.0, channels: int = 8) -> AsyncSshRunner:
    return AsyncSshRunner(NODES, cluster.connect, command_timeout=5, answer_timeout=answer_timeout,
                          probe_interval=0.01, channels=channels)


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
    failovers = sample("bwvisu_ssh_failovers_total", node="login0")
    result = await r.run(["squeue"])
    assert result.node == "login1" and r.down_nodes() == ["login0"]
    await r.run(["squeue"])
    assert sample("bwvisu_ssh_failovers_total", node="login0") == failovers + 1, "one switch, counted once"
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


async def test_a_node_that_stopped_answering_costs_the_answer_timeout_then_the_next_node_runs_it() -> None:
    cluster = FakeCluster()
    r = runner(cluster, answer_timeout=0.2)
    assert (await r.run(["squeue"])).node == "login0"  # the connection is open and cached
    cluster.silent.add("login0")
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await r.run(["sbatch", "--parsable"], input="#!/bin/bash\n", idempotent=False)
    assert result.node == "login1" and loop.time() - started < 1.0
    # The script went to login1 only: login0 never confirmed the channel, so it got no input.
    assert [(c[0], c[2]) for c in cluster.commands if "sbatch" in c[1]] == [("login1", "#!/bin/bash\n")]
    assert r.down_nodes() == ["login0"]
    started = loop.time()
    assert (await r.run(["squeue"])).node == "login1" and loop.time() - started < 0.1  # no second wait
    await r.close()


async def test_a_silent_node_after_a_non_idempotent_command_without_input_is_an_unknown_outcome() -> None:
    cluster = FakeCluster()
    r = runner(cluster, answer_timeout=0.05)
    await r.run(["squeue"])
    cluster.silent.add("login0")
    with pytest.raises(CommandOutcomeUnknown, match="no answer within"):
        await r.run(["scontrol", "release", "7"], idempotent=False)
    await r.close()


async def test_a_silent_node_is_probed_and_comes_back() -> None:
    cluster = FakeCluster()
    r = runner(cluster, answer_timeout=0.05)
    await r.run(["squeue"])
    cluster.silent.add("login0")
    assert (await r.run(["squeue"])).node == "login1"
    cluster.silent.clear()
    for _ in range(100):
        if not r.down_nodes():
            break
        await asyncio.sleep(0.01)
    assert (await r.run(["squeue"])).node == "login0"
    await r.close()


async def test_a_connection_closed_by_unanswered_keepalives_skips_the_node_without_reconnecting() -> None:
    cluster = FakeCluster()
    r = runner(cluster)
    await r.run(["squeue"])
    cluster.gone.add("login0")
    cluster.down.add("login0")  # a connection attempt would fail too, but only after connect-timeout
    assert (await r.run(["sbatch"], input="x", idempotent=False)).node == "login1"
    assert cluster.connects == ["login0", "login1"] and r.down_nodes() == ["login0"]
    await r.close()


async def test_a_connection_the_node_closed_cleanly_is_opened_again_at_once() -> None:
    cluster = FakeCluster()
    r = runner(cluster)
    await r.run(["squeue"])
    for session in cluster.opened:
        session.open = False  # sshd restarted: nothing says the node is gone
    assert (await r.run(["squeue"])).node == "login0"
    assert cluster.connects == ["login0", "login0"]
    await r.close()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_commands_run_at_once_up_to_the_channels_of_every_node_then_wait() -> None:
    cluster = FakeCluster()
    r = runner(cluster, answer_timeout=10, channels=3)
    calls = [asyncio.create_task(r.run(["hold", str(i)])) for i in range(8)]
    await until(lambda: sum(cluster.running.values()) == 6)
    # The first node's channels first, then the second's; the rest wait for a free channel.
    assert cluster.running == {"login0": 3, "login1": 3}
    assert cluster.connects == ["login0", "login1"]
    cluster.held.set()
    results = await asyncio.gather(*calls)
    assert sorted(res.stdout.split(": ")[1] for res in results) == [f"hold {i}" for i in range(8)]
    assert cluster.most == 6
    await r.close()


async def test_a_quiet_runner_keeps_to_the_first_node() -> None:
    cluster = FakeCluster()
    r = runner(cluster, channels=2)
    results = await asyncio.gather(*(r.run(["squeue"]) for _ in range(2)))
    assert {res.node for res in results} == {"login0"} and cluster.connects == ["login0"]
    await r.close()


async def test_a_command_waiting_for_a_channel_goes_elsewhere_once_its_node_is_down() -> None:
    cluster = FakeCluster()
    r = runner(cluster, answer_timeout=10, channels=1)
    held = [asyncio.create_task(r.run(["hold", str(i)])) for i in range(2)]
    await until(lambda: sum(cluster.running.values()) == 2)
    waiting = asyncio.create_task(r.run(["squeue"]))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # both channels busy
    cluster.exec_failure["login0"] = Lost("connection reset")
    cluster.held.set()
    assert (await waiting).node == "login1"
    await asyncio.gather(*held, return_exceptions=True)
    await r.close()


@pytest.mark.parametrize("args", [[], ["printf", "%s|", "a b", "it's", "$HOME", "*", "-x"]])
def test_a_command_through_sh_runs_in_the_nodes_shell_with_the_same_arguments(args: list[str]) -> None:
    """`sh -c SCRIPT NAME ARGS` goes over as one shell line without a second shell: same effect."""
    script = 'umask 077 && umask && [ "$#" -eq 0 ] || exec "$@"'
    argv = ["sh", "-c", script, "sh", *args]
    line = shell_command(argv)
    assert not line.startswith("sh ")
    # What sshd does with the line: the account's shell runs it (here /bin/sh, as a node's could be).
    inline = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, check=True)
    nested = subprocess.run(["/bin/sh", "-c", shlex.join(argv)], capture_output=True, text=True, check=True)
    assert inline.stdout == nested.stdout and "0077" in inline.stdout
    assert shell_command(["sudo", "-n", "-u", "alice", "id", "--", "a b"]) == "sudo -n -u alice id -- 'a b'"


def test_aes_gcm_is_asked_for_first_and_every_default_cipher_stays_offered() -> None:
    import asyncssh

    from scheduler_adapter.adapters.ssh import _ciphers

    defaults = [c.decode() for c in asyncssh.encryption.get_default_encryption_algs()]
    offered = _ciphers()
    assert offered[0] == "aes128-gcm@openssh.com"
    assert sorted(offered) == sorted(defaults), "a node without AES-GCM still finds a cipher"
