"""AsyncSshRunner against a real sshd behind a link that can be cut: bytes stop flowing, nothing is
refused or reset (what a node whose network is gone looks like from here)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from scheduler_adapter.adapters.ssh import AsyncSshRunner, Connector, asyncssh_connector
from scheduler_adapter.errors import CommandOutcomeUnknown
from tests.conditions import eventually
from tests.contract.test_command_runner import Sshd, sshd  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


class Link:
    """A TCP relay on loopback; `cut` drops every byte from then on, in both directions."""

    def __init__(self, port: int) -> None:
        self.target_port = port
        self.cut = False
        self.server: asyncio.Server | None = None
        self.known_hosts = Path()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not self.cut:
                    writer.write(data)
                    await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def link(sshd: Sshd, tmp_path: Path) -> AsyncIterator[Link]:  # noqa: F811
    relay = Link(sshd.node.port)
    port = await relay.start()
    # The same sshd, known under the relay's port as well.
    known = sshd.known_hosts.read_text()
    relay.known_hosts = tmp_path / "known_hosts"
    relay.known_hosts.write_text(known + known.replace(f"]:{sshd.node.port} ", f"]:{port} "))
    try:
        yield relay
    finally:
        await relay.close()


def connector(sshd: Sshd, link: Link, keepalive_interval: float = 30.0) -> Connector:  # noqa: F811
    return asyncssh_connector(str(sshd.key_file), str(link.known_hosts), 5,
                              keepalive_interval=keepalive_interval, keepalive_count_max=2)


async def test_a_cut_link_costs_the_answer_timeout_and_the_script_goes_to_the_other_node(
    sshd: Sshd, link: Link  # noqa: F811
) -> None:
    assert link.server is not None
    cut_port = int(link.server.sockets[0].getsockname()[1])
    nodes = [msgspec.structs.replace(sshd.node, port=cut_port, name="login0"),
             msgspec.structs.replace(sshd.node, name="login1")]
    runner = AsyncSshRunner(nodes, connector(sshd, link), command_timeout=30, answer_timeout=1.0,
                            probe_interval=60)
    try:
        assert (await runner.run(["true"])).node == "login0"  # an open connection through the link
        link.cut = True
        t0 = time.monotonic()
        result = await runner.run(["cat"], input="#!/bin/bash\n", idempotent=False)
        assert (result.node, result.stdout) == ("login1", "#!/bin/bash\n")
        assert time.monotonic() - t0 < 3.0
        assert runner.down_nodes() == ["login0"]
    finally:
        await runner.close()


async def test_unanswered_keepalives_say_the_node_is_gone(sshd: Sshd, link: Link) -> None:  # noqa: F811
    assert link.server is not None
    cut_port = int(link.server.sockets[0].getsockname()[1])
    node = msgspec.structs.replace(sshd.node, port=cut_port)
    session = await connector(sshd, link, keepalive_interval=0.2)(node)
    try:
        assert session.unanswered() is None
        link.cut = True
        await eventually(lambda: not session.alive(), "the keepalives close the connection")
        assert session.unanswered() is not None
    finally:
        session.close()


async def test_a_connection_closed_on_purpose_is_not_a_gone_node(sshd: Sshd, link: Link) -> None:  # noqa: F811
    session = await connector(sshd, link, keepalive_interval=0.2)(sshd.node)
    session.close()
    await eventually(lambda: not session.alive(), "the connection closes")
    await asyncio.sleep(0)
    assert session.unanswered() is None


async def test_a_link_cut_while_sbatch_runs_is_an_unknown_outcome_within_the_keepalives(
    sshd: Sshd, link: Link, tmp_path: Path  # noqa: F811
) -> None:
    assert link.server is not None
    node = msgspec.structs.replace(sshd.node, port=int(link.server.sockets[0].getsockname()[1]))
    read = tmp_path / "script-read"
    runner = AsyncSshRunner([node], connector(sshd, link, keepalive_interval=0.2), command_timeout=30,
                            probe_interval=60)
    try:
        # The script has arrived (cat read it all) when the link goes; the answer never comes.
        command = runner.run(["sh", "-c", f"cat >/dev/null; touch {read}; sleep 20; echo 4711"],
                             input="#!/bin/bash\n", idempotent=False)
        running = asyncio.ensure_future(command)
        await eventually(read.exists, "the node read the script")
        link.cut = True
        t0 = time.monotonic()
        with pytest.raises(CommandOutcomeUnknown):
            await running
        assert time.monotonic() - t0 < 3.0  # the keepalives, not the 30 s command timeout
    finally:
        await runner.close()
