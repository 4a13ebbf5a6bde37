"""The connection to a NATS cluster: credentials, TLS, and reconnecting to any of its servers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from bwvisu_common.errors import DependencyUnavailable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NatsAuth:
    """How a service proves who it is to NATS: user and password, TLS trust, inbox prefix."""

    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    ca_file: str = ""

    @property
    def inbox_prefix(self) -> str:
        # Each identity gets replies on its own inboxes, which no other identity may read.
        return f"_INBOX_{self.user}" if self.user else "_INBOX"


PING_INTERVAL = 1  # seconds
MAX_OUTSTANDING_PINGS = 3


class _Client(NatsClient):
    async def _attempt_reconnect(self) -> None:
        """Reconnect, dropping the old connection at once rather than closing it.

        nats-py waits for the old connection to close before it reconnects. Over TLS, closing waits
        for the server's goodbye (close_notify), which a link that went down never brings: the client
        stayed with the dead server until the link came back, or for Python's 30 s TLS shutdown
        timeout. Dropping it loses nothing that closing it would have saved: nobody reads at the other end.
        """
        if self._transport is not None and not hasattr(self._transport, "_io_writer"):
            log.warning("this nats-py keeps its connection elsewhere: a dead server's is closed, not dropped")
        writer = getattr(self._transport, "_io_writer", None)
        if writer is not None:
            writer.transport.abort()
        await super()._attempt_reconnect()


async def connect_nats(servers: Sequence[str], name: str, auth: NatsAuth | None = None) -> NatsClient:
    """Connect with endless reconnects, to `servers` in order; a first connection that fails is
    DependencyUnavailable."""
    auth = auth or NatsAuth()

    client: list[NatsClient] = []
    problems: list[Exception] = []

    async def on_disconnect() -> None:
        if client and not (client[0].is_draining or client[0].is_closed):
            log.warning("NATS connection lost; reconnecting")

    async def on_reconnect() -> None:
        log.info("NATS connection back")

    async def on_error(exc: Exception) -> None:
        problems.append(exc)
        log.warning("NATS: %s", exc)

    nc = _Client()
    connecting = nc.connect(
        servers=list(servers), name=name, connect_timeout=3, max_reconnect_attempts=-1,
        # A server whose link died drops packets without a word: with three pings a second apart
        # unanswered (3-4 s) the connection counts as stale and moves to another server. nats-py's
        # default waits two minutes per ping; fewer than three would mistake a busy machine for
        # a dead link.
        ping_interval=PING_INTERVAL, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        dont_randomize=True,  # in the order given: this machine's own server first (connect.py)
        reconnect_time_wait=1, allow_reconnect=True, disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect, error_cb=on_error, inbox_prefix=auth.inbox_prefix,
        **_credentials(auth),
    )
    try:
        # nats-py retries a refused login for ever; a first connection gets a bounded time.
        await asyncio.wait_for(connecting, timeout=10)
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        # A refused login says the most; what the closing socket said after it says little.
        refusals = [p for p in problems if "authorization" in str(p).lower()]
        why = (refusals or problems or [exc])[-1]
        with contextlib.suppress(Exception):  # or it would go on trying in the background
            await asyncio.wait_for(nc.close(), 2)
        raise DependencyUnavailable(f"cannot reach NATS at {', '.join(servers)}: {why}") from exc
    client.append(nc)
    return nc


def _credentials(auth: NatsAuth) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if auth.user:
        options.update(user=auth.user, password=auth.password)
    if auth.ca_file:
        options["tls"] = ssl.create_default_context(cafile=auth.ca_file)
    return options
