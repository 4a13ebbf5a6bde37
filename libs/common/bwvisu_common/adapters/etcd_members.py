"""The members of one etcd cluster: which one a store talks to, and finding another that answers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import aetcd
import grpc

from bwvisu_common.adapters.etcd_tls import TlsEtcdClient
from bwvisu_common.errors import DependencyUnavailable

log = logging.getLogger(__name__)

# Seconds an etcd call may take; a member whose link is down costs this long before the next is tried.
CALL_TIMEOUT = 5


@dataclasses.dataclass(frozen=True)
class EtcdLogin:
    """Who a store logs in as (no user: no auth), and the CA to trust (none: plaintext)."""

    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    ca_file: str = ""


# gRPC's default of 4 MiB per answer holds the read model of some 6,000 jobs: 10,000 jobs (about
# 600 bytes each) would fail every start-up. 256 MiB is room for some 400,000.
CHANNEL_OPTIONS = {"grpc.max_receive_message_length": 256 * 1024 * 1024}


async def open_client(host: str, port: int, login: EtcdLogin, probe: bytes) -> aetcd.Client:
    """A client of the member at host:port that answered a linearizable read of `probe`.

    The read needs the cluster's leader, so a member cut off from its quorum does not count."""
    credentials = {"username": login.user, "password": login.password} if login.user else {}
    client_class = TlsEtcdClient if login.ca_file else aetcd.Client
    client = client_class(host=host, port=port, timeout=CALL_TIMEOUT, options=CHANNEL_OPTIONS, **credentials)
    try:
        if login.ca_file:
            client.ca_pem = await asyncio.to_thread(Path(login.ca_file).read_bytes)
        await client.connect()
        await client.get(probe)
    except Exception as exc:
        await client.close()
        who = f" as {login.user}" if login.user else ""
        raise DependencyUnavailable(f"cannot use etcd at {host}:{port}{who}: {exc}") from exc
    return client


class EtcdMembers:
    """The members of `etcd-servers`, in order, and the one in use."""

    def __init__(self, members: Sequence[tuple[str, int]], login: EtcdLogin, probe: bytes) -> None:
        if not members:
            raise DependencyUnavailable("no etcd-servers configured")
        self._members = list(members)
        self._login = login
        self._probe = probe
        self.current = 0

    def __len__(self) -> int:
        return len(self._members)

    def name(self, index: int | None = None) -> str:
        host, port = self._members[self.current if index is None else index]
        return f"{host}:{port}"

    async def first_answering(self) -> aetcd.Client:
        """The first member, in order, that answers."""
        return await self._try_from(0)

    async def next_answering(self) -> aetcd.Client:
        """The next member after the one in use that answers; the one in use is tried last
        (a lone member that restarted is the only one there is)."""
        return await self._try_from(self.current + 1)

    async def _try_from(self, start: int) -> aetcd.Client:
        problems = []
        for k in range(len(self._members)):
            index = (start + k) % len(self._members)
            host, port = self._members[index]
            try:
                client = await open_client(host, port, self._login, self._probe)
            except DependencyUnavailable as exc:
                problems.append(str(exc))
                continue
            self.current = index
            return client
        raise DependencyUnavailable("; ".join(problems))


# gRPC codes of a member that stopped answering (down, cut off, without a leader), not of a
# refused request: another member may well answer.
_MEMBER_LOST_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def member_lost(exc: BaseException) -> bool:
    """Whether `exc` says the member stopped answering."""
    if isinstance(exc, (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError, OSError, TimeoutError)):
        return True
    return isinstance(exc, grpc.RpcError) and exc.code() in _MEMBER_LOST_CODES


def never_sent(exc: BaseException) -> bool:
    """Whether `exc` says the request reached no member (so it cannot have taken effect)."""
    cause = exc.__cause__ if isinstance(exc, aetcd.ClientError) and exc.__cause__ else exc
    text = str(cause).lower()
    return isinstance(cause, ConnectionRefusedError) or (
        isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNAVAILABLE
        and any(s in text for s in ("failed to connect", "connection refused", "connect failed")))
