"""EtcdStateStore: the projected read model, reservations and secrets in etcd (aetcd)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import aetcd
import grpc
import msgspec

from bwvisu_common import state_keys as layout
from bwvisu_common.adapters.etcd_members import CALL_TIMEOUT, EtcdLogin, EtcdMembers, member_lost, never_sent
from bwvisu_common.errors import BwvisuError, DependencyUnavailable
from bwvisu_common.read_model import JobView

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# etcd refuses transactions with more operations than --max-txn-ops (128 by default).
MAX_TXN_OPS = 120

_job_encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(JobView)


_ETCD_ERRORS = (aetcd.ClientError, grpc.RpcError, OSError, TimeoutError)


Call = Callable[P, Coroutine[Any, Any, T]]


def _etcd_call(*, retry_sent: bool) -> Callable[[Call[P, T]], Call[P, T]]:
    """aetcd and gRPC errors never leave this adapter: they become DependencyUnavailable.

    A member that stops answering is left for the next one of `etcd-servers` that does, and the
    call is made once more there: always when `retry_sent` (reads, guarded and idempotent
    writes), else only when the first request reached no member (so it cannot have taken effect).
    """

    def decorate(fn: Call[P, T]) -> Call[P, T]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            store = args[0]
            assert isinstance(store, EtcdStateStore)
            client = store._etcd
            try:
                try:
                    return await fn(*args, **kwargs)
                except _ETCD_ERRORS as exc:
                    if "invalid auth token" in str(exc):
                        # etcd forgets auth tokens (idle TTL, a restart) and aetcd does not log in again.
                        await store.reauthenticate()
                    elif member_lost(exc):
                        await store.fail_over(client, exc)
                        if not (retry_sent or never_sent(exc)):
                            raise
                    else:
                        raise
                    return await fn(*args, **kwargs)
            except BwvisuError:
                raise
            except _ETCD_ERRORS as exc:
                raise DependencyUnavailable(f"etcd: {exc}") from exc

        return wrapper

    return decorate


_translated = _etcd_call(retry_sent=True)


class EtcdStateStore:
    """Keys live under one prefix, in the areas of bwvisu_common.state_keys."""

    def __init__(self, client: aetcd.Client, prefix: str = layout.ROOT,
                 members: EtcdMembers | None = None) -> None:
        self._etcd = client
        self._members = members
        self._moving = asyncio.Lock()
        # Clients of members left behind, closed once no call can be waiting on them any more.
        self._retired: list[aetcd.Client] = []
        self._retiring: list[asyncio.TimerHandle] = []
        self._closing: set[asyncio.Future[None]] = set()
        self._prefix = prefix
        self._jobs = f"{prefix}{layout.JOBS}"
        self._seq = f"{prefix}{layout.PROJECTION_SEQ}".encode()
        self._reservations = f"{prefix}{layout.RESERVATIONS}"
        self._secrets = f"{prefix}{layout.SECRETS}"
        self._revoked = f"{prefix}{layout.REVOKED_LOGINS}"

    @classmethod
    async def connect(cls, host: str, port: int, prefix: str = layout.ROOT, *, user: str = "",
                      password: str = "", ca_file: str = "") -> EtcdStateStore:
        """Log in as `user` when one is given; over TLS when `ca_file` names the CA to trust."""
        return await cls.connect_cluster([(host, port)], prefix, EtcdLogin(user, password, ca_file))

    @classmethod
    async def connect_cluster(cls, members: Sequence[tuple[str, int]], prefix: str = layout.ROOT,
                              login: EtcdLogin | None = None) -> EtcdStateStore:
        """The first of `members` that answers; later calls move on to another when it stops."""
        cluster = EtcdMembers(members, login or EtcdLogin(), f"{prefix}{layout.PROJECTION_SEQ}".encode())
        return cls(await cluster.first_answering(), prefix, cluster)

    @property
    def member(self) -> str:
        """host:port of the member in use (for logs and tests)."""
        return self._members.name() if self._members else "?"

    async def fail_over(self, failed: aetcd.Client, why: BaseException) -> None:
        """Leave `failed` (the client a call failed on) for the next member that answers.

        Calls failing together move once: the later ones find the store on a new client already."""
        if self._members is None:
            raise DependencyUnavailable(f"etcd: {why}") from why
        async with self._moving:
            if self._etcd is not failed:
                return
            lost = self._members.name()
            client = await self._members.next_answering()
            self._etcd = client
        log.warning("etcd member %s stopped answering (%s); now using %s", lost, why, self._members.name())
        # Closing a channel cancels the calls still waiting on it, and gRPC reports that as the
        # caller's own cancellation: the old client goes once those calls timed out by themselves.
        self._retired.append(failed)
        retiring = asyncio.get_running_loop().call_later(CALL_TIMEOUT + 1, self._close_retired, failed)
        self._retiring.append(retiring)

    def _close_retired(self, client: aetcd.Client) -> None:
        if client in self._retired:
            self._retired.remove(client)
            task = asyncio.ensure_future(_quietly_closed(client))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def reauthenticate(self) -> None:
        """A fresh connection, which logs in again."""
        await self._etcd.close()
        await self._etcd.connect()

    async def close(self) -> None:
        for retiring in self._retiring:
            retiring.cancel()
        for client in self._retired:
            await _quietly_closed(client)
        self._retired.clear()
        await self._etcd.close()

    async def _txn(self, compare: list[Any], success: list[Any]) -> tuple[bool, list[Any]]:
        ok, responses = await self._etcd.transaction(compare=compare, success=success, failure=[])
        return bool(ok), responses

    @_translated
    async def load_jobs(self) -> tuple[dict[str, JobView], int]:
        # One read at one revision, so jobs and the sequence agree.
        _, (jobs_kvs, seq_kvs) = await self._txn(
            compare=[],
            success=[
                self._etcd.transactions.get(self._jobs.encode(), _prefix_end(self._jobs)),
                self._etcd.transactions.get(self._seq),
            ],
        )
        jobs = {}
        for value, _meta in jobs_kvs:
            job = _job_decoder.decode(value)
            jobs[job.job_id] = job
        seq = int(seq_kvs[0][0]) if seq_kvs else 0
        return jobs, seq

    @_translated
    async def get_job(self, job_id: str) -> JobView | None:
        found = await self._etcd.get(f"{self._jobs}{job_id}".encode())
        return None if found is None else _job_decoder.decode(found.value)

    @_translated
    async def projected_seq(self) -> int:
        found = await self._etcd.get(self._seq)
        return 0 if found is None else int(found.value)

    @_translated
    async def save_jobs(self, jobs: Sequence[JobView], seq: int, expected_seq: int) -> bool:
        """Writes in chunks, each guarded by `expected_seq`; only the last moves the sequence.

        A crash between chunks leaves some jobs ahead of the sequence; the replay from the
        old sequence that follows folds the same events again and writes the same views.
        """
        t = self._etcd.transactions
        guard = (
            t.version(self._seq) == 0 if expected_seq == 0 else t.value(self._seq) == str(expected_seq)
        )
        chunks = [jobs[i : i + MAX_TXN_OPS] for i in range(0, len(jobs), MAX_TXN_OPS)] or [[]]
        for n, chunk in enumerate(chunks):
            ops = [t.put(f"{self._jobs}{j.job_id}".encode(), _job_encoder.encode(j)) for j in chunk]
            if n == len(chunks) - 1:
                ops.append(t.put(self._seq, str(seq).encode()))
            ok, _ = await self._txn(compare=[guard], success=ops)
            if not ok:
                return False
        return True

    @_translated
    async def forget_jobs(self, job_ids: Sequence[str], expected_seq: int) -> bool:
        """Deletes in chunks, each guarded by `expected_seq`; a deleted job stays deleted."""
        t = self._etcd.transactions
        guard = t.version(self._seq) == 0 if expected_seq == 0 else t.value(self._seq) == str(expected_seq)
        unique = list(dict.fromkeys(job_ids))  # etcd refuses a transaction touching a key twice
        for start in range(0, len(unique), MAX_TXN_OPS):
            chunk = unique[start : start + MAX_TXN_OPS]
            ok, _ = await self._txn(compare=[guard],
                                    success=[t.delete(f"{self._jobs}{j}".encode()) for j in chunk])
            if not ok:
                return False
        return True

    @_translated
    async def wipe_projection(self) -> None:
        await self._txn(
            compare=[],
            success=[
                self._etcd.transactions.delete(self._jobs.encode(), _prefix_end(self._jobs)),
                self._etcd.transactions.delete(self._seq),
            ],
        )

    @_etcd_call(retry_sent=False)  # a retry could not tell its own committed hold from another's
    async def reserve(self, keys: Sequence[str], owner: str) -> bool:
        t = self._etcd.transactions
        full = [f"{self._reservations}{k}".encode() for k in keys]
        ok, _ = await self._txn(
            compare=[t.create(k) == 0 for k in full],
            success=[t.put(k, owner.encode()) for k in full],
        )
        return bool(ok)

    @_translated
    async def release_job(self, owner: str, keys: Sequence[str]) -> int:
        """One guarded transaction per MAX_TXN_OPS keys (a job holds far fewer in practice).

        Over that, the last chunk goes first and the first keys last: a caller lists first the
        keys it finds the job by again (a gateway's ports), so a release that fails half-way
        is found and finished by the next attempt."""
        unique = list(dict.fromkeys(keys))  # etcd refuses a transaction touching a key twice
        freed = 0
        starts = range(0, len(unique), MAX_TXN_OPS)
        for start in reversed(starts):
            freed += await self._release_held(owner, unique[start : start + MAX_TXN_OPS])
        return freed

    async def _release_held(self, owner: str, keys: Sequence[str]) -> int:
        t = self._etcd.transactions
        full = [f"{self._reservations}{k}".encode() for k in keys]
        holder = owner.encode()
        while True:
            _, found = await self._txn(compare=[], success=[t.get(k) for k in full])
            mine = [k for k, kvs in zip(full, found, strict=True) if kvs and kvs[0][0] == holder]
            if not mine:
                return 0
            # Each delete is guarded by its key's holder: if one changed hands since the read,
            # nothing is deleted and the keys are read again, so no other job's hold is freed.
            ok, _ = await self._txn(compare=[t.value(k) == holder for k in mine],
                                    success=[t.delete(k) for k in mine])
            if ok:
                return len(mine)

    @_translated
    async def reservations(self, prefix: str = "") -> dict[str, str]:
        start = f"{self._reservations}{prefix}"
        found = await self._etcd.get_prefix(start.encode())
        cut = len(self._reservations)
        return {kv.key.decode()[cut:]: kv.value.decode() for kv in found}

    @_translated
    async def put_secret(self, name: str, value: bytes, ttl: int) -> None:
        lease = await self._etcd.lease(ttl)
        await self._etcd.put(f"{self._secrets}{name}".encode(), value, lease=lease)

    @_translated
    async def get_secret(self, name: str) -> bytes | None:
        found = await self._etcd.get(f"{self._secrets}{name}".encode())
        return None if found is None else bytes(found.value)

    @_translated
    async def delete_secret(self, name: str) -> None:
        key = f"{self._secrets}{name}".encode()
        found = await self._etcd.get(key)
        if found is not None and found.lease:
            # Revoking the lease deletes the key with it, and leaves no lease behind until its TTL.
            with contextlib.suppress(aetcd.ClientError):
                await self._etcd.revoke_lease(found.lease)
        await self._etcd.delete(key)

    @_translated
    async def secret_names(self, prefix: str = "") -> list[str]:
        found = await self._etcd.get_prefix(f"{self._secrets}{prefix}".encode(), keys_only=True)
        cut = len(self._secrets)
        return [kv.key.decode()[cut:] for kv in found]

    @_translated
    async def revoke_login(self, login_id: str, ttl: int) -> None:
        # A lease of the cookie's remaining lifetime: etcd forgets it once the cookie is dead anyway.
        lease = await self._etcd.lease(max(ttl, 1))
        await self._etcd.put(f"{self._revoked}{login_id}".encode(), b"revoked", lease=lease)

    @_translated
    async def login_revoked(self, login_id: str) -> bool:
        return await self._etcd.get(f"{self._revoked}{login_id}".encode()) is not None


async def _quietly_closed(client: aetcd.Client) -> None:
    with contextlib.suppress(Exception):
        await client.close()


def _prefix_end(prefix: str) -> bytes:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)
