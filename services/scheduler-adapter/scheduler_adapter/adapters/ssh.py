"""AsyncSshRunner: commands on command nodes over persistent, host-key-verified SSH connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import asyncssh
from prometheus_client import Counter

from bwvisu_common.settings import CommandNode, Settings
from scheduler_adapter.errors import CommandOutcomeUnknown, SchedulerUnavailable
from scheduler_adapter.ports import CommandResult

log = logging.getLogger(__name__)


class NotSent(Exception):
    """The command never reached the node (the session could not be opened)."""


class Lost(Exception):
    """The connection died or timed out after the command was sent."""


class Running(Protocol):
    """A command that a node has started."""

    async def wait(self, timeout: float) -> CommandResult: ...


class Session(Protocol):
    """One open connection to a node, as the runner uses it."""

    async def start(self, command: str, input: str | None) -> Running:
        """Open a channel and start the command; its input is sent only once the node answered."""
        ...

    def alive(self) -> bool: ...

    def unanswered(self) -> str | None:
        """Why the connection closed because the node stopped answering; None otherwise."""
        ...

    def close(self) -> None: ...


Connector = Callable[[CommandNode], Awaitable[Session]]


class AsyncSshProcess:
    """A command started over asyncssh, with its errors sorted into Lost."""

    def __init__(self, proc: asyncssh.SSHClientProcess[str], label: str) -> None:
        self._proc = proc
        self._label = label

    async def wait(self, timeout: float) -> CommandResult:
        try:
            done = await self._proc.wait(check=False, timeout=timeout)
        except (asyncssh.Error, OSError) as exc:  # asyncssh.TimeoutError is both
            raise Lost(repr(exc)) from exc
        status = done.exit_status
        if status is None:
            if done.exit_signal is None:
                raise Lost("the channel closed without an exit status")
            status = 128 + _signal_number(done.exit_signal[0])  # killed on the node
        return CommandResult(status, _text(done.stdout), _text(done.stderr), self._label)


class _Client(asyncssh.SSHClient):
    """Remembers why the connection was lost: the keepalives giving up means the node is gone."""

    def __init__(self) -> None:
        self.unanswered: str | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        # asyncssh's words when keepalive_count_max keepalives went unanswered.
        if exc is not None and "keepalive" in str(exc):
            self.unanswered = str(exc)


class AsyncSshSession:
    """An asyncssh client connection, with its errors sorted into NotSent and Lost."""

    def __init__(self, conn: asyncssh.SSHClientConnection, label: str, client: _Client | None = None) -> None:
        self._conn = conn
        self._label = label
        self._client = client or _Client()

    async def start(self, command: str, input: str | None) -> Running:
        # asyncssh writes `input` only after the node confirmed the channel and the exec request.
        try:
            proc = await self._conn.create_process(command, input=input)
        except asyncssh.ChannelOpenError as exc:
            raise NotSent(str(exc)) from exc
        except (asyncssh.Error, OSError) as exc:
            raise Lost(repr(exc)) from exc
        return AsyncSshProcess(proc, self._label)

    def alive(self) -> bool:
        return not self._conn.is_closed()

    def unanswered(self) -> str | None:
        return self._client.unanswered

    def close(self) -> None:
        self._conn.close()


def _signal_number(name: str) -> int:
    try:
        return int(signal.Signals[f"SIG{name}"])
    except KeyError:
        return 0


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data if isinstance(data, str) else ""


# AES-GCM first: with the CPU's AES instructions it costs asyncssh (and sshd) less per packet than
# chacha20-poly1305, asyncssh's first choice, which builds two cipher objects for every packet
# (measured: 1.2 against 1.7 ms of this process's CPU per command). asyncssh's others follow.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _ciphers() -> list[str]:
    defaults = [c.decode("ascii") for c in asyncssh.encryption.get_default_encryption_algs()]
    first = [c for c in PREFERRED_CIPHERS if c in defaults]
    return first + [c for c in defaults if c not in first]


def asyncssh_connector(key_file: str, known_hosts: str, connect_timeout: float, *,
                       keepalive_interval: float = 2.0, keepalive_count_max: int = 3) -> Connector:
    """Connect as the node's user with the service key; the node's host key must be known."""

    async def connect(node: CommandNode) -> Session:
        # Keepalives close a connection whose node stopped answering, also while a command runs:
        # after keepalive_interval * keepalive_count_max, not after the command's timeout.
        options: dict[str, object] = {
            "port": node.port, "username": node.user, "connect_timeout": connect_timeout,
            "keepalive_interval": keepalive_interval, "keepalive_count_max": keepalive_count_max,
            "agent_path": None,
            "config": [], "preferred_auth": "publickey", "encryption_algs": _ciphers(),
        }
        if key_file:
            options["client_keys"] = [key_file]
        if known_hosts:  # else asyncssh checks ~/.ssh/known_hosts; never None (no checking)
            options["known_hosts"] = known_hosts
        conn, client = await asyncssh.create_connection(_Client, node.ip, **options)  # type: ignore[arg-type]
        return AsyncSshSession(conn, node.label, client if isinstance(client, _Client) else None)

    return connect


def shell_command(argv: Sequence[str]) -> str:
    """argv as the line sshd hands to the node account's (POSIX) shell.

    `sh -c SCRIPT NAME ARGS...` is run by that shell itself, as `set -- ARGS; SCRIPT`: the same
    commands with the same arguments, without a second shell started on every command."""
    if len(argv) >= 4 and argv[0] == "sh" and argv[1] == "-c":
        return f"set -- {shlex.join(argv[4:])}; {argv[2]}"
    return shlex.join(argv)


FAILOVERS = Counter("bwvisu_ssh_failovers_total",
                    "Times a command node was given up on and commands went to the next one", ["node"])


class _Node:
    def __init__(self, spec: CommandNode) -> None:
        self.spec = spec
        self.session: Session | None = None
        self.down = False
        self.lock = asyncio.Lock()
        self.probe: asyncio.Task[None] | None = None
        self.busy = 0  # channels running a command now


class AsyncSshRunner:
    """Runs argv on the first command node that answers and has a free channel; one persistent
    connection per node, up to `channels` commands at once on each."""

    def __init__(self, nodes: Sequence[CommandNode], connector: Connector, *, command_timeout: float = 30.0,
                 answer_timeout: float = 3.0, probe_interval: float = 2.0, channels: int = 8) -> None:
        self._nodes = [_Node(n) for n in nodes]
        self._connect = connector
        self._command_timeout = command_timeout
        self._answer_timeout = answer_timeout
        self._probe_interval = probe_interval
        self._channels = channels
        self._freed = asyncio.Condition()

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncSshRunner:
        ssh = settings.ssh
        connector = asyncssh_connector(ssh.key_file, ssh.known_hosts, ssh.connect_timeout,
                                       keepalive_interval=ssh.keepalive_interval,
                                       keepalive_count_max=ssh.keepalive_count_max)
        return cls(settings.command_nodes, connector, command_timeout=ssh.command_timeout,
                   answer_timeout=ssh.answer_timeout,
                   probe_interval=max(1.0, settings.scheduler.poll_interval), channels=ssh.channels_per_node)

    def down_nodes(self) -> list[str]:
        return [n.spec.label for n in self._nodes if n.down]

    async def run(
        self, argv: Sequence[str], *, input: str | None = None, idempotent: bool = True
    ) -> CommandResult:
        command = shell_command(argv)  # the one place argv becomes a string
        problems: list[str] = []
        tried: list[_Node] = []
        while (node := await self._channel([n for n in self._nodes if n not in tried])) is not None:
            tried.append(node)
            try:
                return await self._exec(node, command, input, idempotent)
            except NotSent as exc:
                problems.append(f"{node.spec.label}: {exc}")
                self._mark_down(node, str(exc))
            except Lost as exc:
                self._mark_down(node, str(exc))
                if not idempotent:
                    raise CommandOutcomeUnknown(
                        f"{argv[0] if argv else 'command'} sent to {node.spec.label}, "
                        f"then the connection failed: {exc}") from exc
                problems.append(f"{node.spec.label}: {exc}")
            finally:
                await self._release(node)
        if not problems:
            problems = [f"all command nodes are down ({', '.join(self.down_nodes())})"]
        raise SchedulerUnavailable("no command node answered: " + "; ".join(problems))

    async def _channel(self, candidates: list[_Node]) -> _Node | None:
        """The first of `candidates` that is up and has a free channel, once one has; None if none is up.

        Busy channels on the first node send the command to the next: under load both nodes work."""
        async with self._freed:
            while True:
                up = [n for n in candidates if not n.down]
                if not up:
                    return None
                for node in up:
                    if node.busy < self._channels:
                        node.busy += 1
                        return node
                await self._freed.wait()

    async def _release(self, node: _Node) -> None:
        async with self._freed:
            node.busy -= 1
            # Every waiter looks again: each may wait for other nodes, or find its nodes all down now.
            self._freed.notify_all()

    async def _exec(self, node: _Node, command: str, input: str | None, idempotent: bool) -> CommandResult:
        session = await self._session(node)
        try:
            # A cached connection to a node whose link went down looks open until keepalives
            # give up: a node that does not even start the command is skipped after a short wait.
            running = await asyncio.wait_for(session.start(command, input), self._answer_timeout)
        except TimeoutError as exc:
            why = f"no answer within {self._answer_timeout:g} s"
            if input is None and not idempotent:
                raise Lost(why) from exc  # the exec request may have reached the node
            # Its input was never sent: a command that may have started has nothing to act on,
            # and it ends when the connection is closed.
            raise NotSent(why) from exc
        return await running.wait(self._command_timeout)

    async def _session(self, node: _Node) -> Session:
        async with node.lock:
            if node.session is not None:
                if node.session.alive():
                    return node.session
                unanswered = node.session.unanswered()
                if unanswered is not None:
                    # Gone while idle: skip it now rather than wait for a connection attempt.
                    raise NotSent(f"stopped answering: {unanswered}")
            try:
                node.session = await self._connect(node.spec)
            except (asyncssh.Error, OSError, TimeoutError) as exc:
                raise NotSent(f"cannot connect: {exc!r}") from exc
            log.info("connected to command node %s", node.spec.label)
            return node.session

    def _mark_down(self, node: _Node, why: str) -> None:
        if node.session is not None:
            node.session.close()
            node.session = None
        if node.down:
            return
        node.down = True
        FAILOVERS.labels(node=node.spec.label).inc()
        log.warning("command node %s is down (%s); probing it in the background", node.spec.label, why)
        node.probe = asyncio.get_running_loop().create_task(self._probe(node))

    async def _probe(self, node: _Node) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                await self._session(node)
            except NotSent as exc:
                log.debug("command node %s still down: %s", node.spec.label, exc)
                continue
            node.down = False
            log.info("command node %s is back", node.spec.label)
            return

    async def close(self) -> None:
        for node in self._nodes:
            if node.probe is not None:
                node.probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await node.probe
            if node.session is not None:
                node.session.close()
                node.session = None
