"""EtcdElection: roles held by keys that live on this replica's lease (aetcd: lease + transaction).

aetcd has no election recipe; this is the usual one. A role is the key ROOT/elections/<role>; it
is taken by creating it (a transaction: only if absent) on this replica's lease, and given up by
deleting it or by the lease's end. The lease is refreshed every second; a refresh that fails, or
that etcd answers with "expired", ends every term at once (see bwvisu_common.election for the
clock that fences a term even when no answer comes at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aetcd
import grpc

from bwvisu_common import state_keys as layout
from bwvisu_common.adapters.etcd_tls import TlsEtcdClient
from bwvisu_common.election import LeaseClock, Term
from bwvisu_common.errors import DependencyUnavailable

log = logging.getLogger(__name__)

# A dead holder's role is free LEASE_TTL after its last refresh; etcd refuses much shorter leases
# (its minimum follows its election timeout: 1.5 s by default).
LEASE_TTL = 3
REFRESH_EVERY = 1.0
# A candidate tries again this often: a role is taken this long at most after it is free.
RETRY_EVERY = 0.25
# An answer later than this is no use to a lease of LEASE_TTL: the next member is asked instead.
CALL_TIMEOUT = 2
_ETCD_ERRORS = (aetcd.ClientError, grpc.RpcError, OSError, TimeoutError)


class EtcdElection:
    """Campaigns for roles under ROOT/elections/ as `candidate`; one lease per replica, on the first of
    `endpoints` that answers, starting after the member of the lease that was lost."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], candidate: str, *, prefix: str = layout.ROOT,
                 user: str = "", password: str = "", ca_file: str = "", ttl: int = LEASE_TTL,
                 refresh_every: float = REFRESH_EVERY, retry_every: float = RETRY_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.candidate = candidate
        self._endpoints = list(endpoints)
        self._member = -1  # the index of the endpoint the current (or last) lease was granted by
        self._area = f"{prefix}{layout.ELECTIONS}"
        self._credentials = {"username": user, "password": password} if user else {}
        self._ca_file = ca_file
        self._ttl = ttl
        self._refresh_every = refresh_every
        self._retry_every = retry_every
        self._clock = clock
        self._client: aetcd.Client | None = None
        self._lease_id = 0
        self._lease: LeaseClock | None = None
        self._terms: dict[str, Term] = {}
        self._opening = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    def _key(self, role: str) -> bytes:
        return f"{self._area}{role}".encode()

    async def campaign(self, role: str) -> Term:
        while True:
            term = await self.try_hold(role)
            if term is not None:
                return term
            await asyncio.sleep(self._retry_every)

    async def try_hold(self, role: str) -> Term | None:
        client, lease_id, lease = await self._session()
        key, t = self._key(role), client.transactions
        # Shielded: cancelled while etcd may have created the key, the answer still decides what to
        # undo, or the role would stay taken by nobody until this replica's lease ends.
        attempt = asyncio.ensure_future(client.transaction(
            compare=[t.create(key) == 0],
            success=[t.put(key, self.candidate.encode(), lease=lease_id), t.get(key)], failure=[]))
        try:
            ok, responses = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda done: self._undo(done, key))
            raise
        except _ETCD_ERRORS as exc:
            raise DependencyUnavailable(f"etcd: cannot campaign for {role}: {exc}") from exc
        if not ok:
            return None
        created = responses[1][0][1].create_revision
        term = Term(role, self.candidate, lease, fence=created)
        self._terms[role] = term
        return term

    def _undo(self, attempt: asyncio.Future[Any], key: bytes) -> None:
        if attempt.cancelled() or attempt.exception() is not None or not attempt.result()[0]:
            return
        created = attempt.result()[1][1][0][1].create_revision
        task = asyncio.ensure_future(self._delete_if(key, created))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _delete_if(self, key: bytes, created: int) -> None:
        with contextlib.suppress(*_ETCD_ERRORS):
            await self._delete_if_raising(key, created)

    async def resign(self, term: Term) -> None:
        term.end("given up")
        if self._terms.get(term.role) is term:
            del self._terms[term.role]
        try:
            await self._delete_if_raising(self._key(term.role), term.fence)
        except _ETCD_ERRORS as exc:
            raise DependencyUnavailable(f"etcd: cannot give up {term.role}: {exc}") from exc

    async def _delete_if_raising(self, key: bytes, created: int) -> None:
        client = self._client
        if client is not None:
            t = client.transactions
            await client.transaction(compare=[t.create(key) == created], success=[t.delete(key)], failure=[])

    async def holder(self, role: str) -> str | None:
        client, _, _ = await self._session()
        try:
            found = await client.get(self._key(role))
        except _ETCD_ERRORS as exc:
            raise DependencyUnavailable(f"etcd: cannot read {role}: {exc}") from exc
        return None if found is None else bytes(found.value).decode()

    async def close(self) -> None:
        """Revoke the lease: every role this replica holds is free at once, not at the lease's end."""
        for task in list(self._background):
            task.cancel()
        if self._lease is not None:
            self._lease.lose("closed")
        client, lease_id = self._client, self._lease_id
        self._client, self._lease = None, None
        if client is not None:
            with contextlib.suppress(*_ETCD_ERRORS):
                await asyncio.wait_for(client.revoke_lease(lease_id), 2)
            with contextlib.suppress(*_ETCD_ERRORS):
                await client.close()

    async def _session(self) -> tuple[aetcd.Client, int, LeaseClock]:
        """The connection and the live lease, made anew (on the first member that answers) after a loss."""
        async with self._opening:
            if self._client is not None and self._lease is not None and self._lease.alive():
                return self._client, self._lease_id, self._lease
            await self._drop()
            problems = []
            count = len(self._endpoints)
            # A lost lease may mean a dead member: the others first, that one last.
            for index in ((self._member + 1 + i) % count for i in range(count)):
                host, port = self._endpoints[index]
                try:
                    opened = await self._open(host, port)
                except _ETCD_ERRORS as exc:
                    problems.append(f"{host}:{port}: {exc}")
                    continue
                self._member = index
                return opened
            raise DependencyUnavailable("etcd: no member grants a lease: " + ("; ".join(problems) or "none"))

    async def _open(self, host: str, port: int) -> tuple[aetcd.Client, int, LeaseClock]:
        client_class = TlsEtcdClient if self._ca_file else aetcd.Client
        client = client_class(host=host, port=port, timeout=CALL_TIMEOUT, **self._credentials)
        try:
            if self._ca_file:
                client.ca_pem = await asyncio.to_thread(Path(self._ca_file).read_bytes)
            await client.connect()
            asked = self._clock()
            granted = await client.lease(self._ttl)
        except BaseException:
            with contextlib.suppress(*_ETCD_ERRORS):
                await client.close()
            raise
        lease = LeaseClock(float(self._ttl), asked, self._clock)
        self._client, self._lease_id, self._lease = client, granted.id, lease
        task = asyncio.ensure_future(self._keep_alive(client, granted.id, lease))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return client, granted.id, lease

    async def _drop(self) -> None:
        client, self._client, self._lease = self._client, None, None
        self._terms.clear()
        if client is not None:
            with contextlib.suppress(*_ETCD_ERRORS):
                await client.close()

    async def _keep_alive(self, client: aetcd.Client, lease_id: int, lease: LeaseClock) -> None:
        try:
            while lease.alive():
                await asyncio.sleep(self._refresh_every)
                sent = self._clock()
                reply = await asyncio.wait_for(client.refresh_lease(lease_id), max(lease.remaining(), 0.01))
                if reply is None or reply.TTL <= 0:
                    lease.lose("etcd let the lease expire")
                    break
                lease.renewed(sent)
                await self._check_keys(client)
        except _ETCD_ERRORS as exc:
            lease.lose(f"etcd: {exc!r}")
        finally:
            lease.lose(lease.why or "the lease was not refreshed in time")
            if lease is self._lease:
                log.warning("election lease of %s lost: %s", self.candidate, lease.why)

    async def _check_keys(self, client: aetcd.Client) -> None:
        """A role whose key is gone or was made anew (someone removed it) is no longer ours."""
        terms = [term for term in self._terms.values() if term.held()]
        if not terms:
            return
        t = client.transactions
        gets = [t.get(self._key(term.role)) for term in terms]
        _, found = await client.transaction(compare=[], success=gets, failure=[])
        for term, kvs in zip(terms, found, strict=True):
            if not kvs or kvs[0][1].create_revision != term.fence:
                term.end("its key was removed")
