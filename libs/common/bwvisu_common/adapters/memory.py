"""In-memory EventStore and StateStore for fast unit tests; tests/contract holds them to the real ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from bwvisu_common import events as ev
from bwvisu_common.errors import ConcurrencyConflict
from bwvisu_common.ports import Handler
from bwvisu_common.projections import JobView


class InMemoryEventStore:
    """A list of (seq, event) with JetStream's per-job expected-sequence and dedup rules."""

    def __init__(self) -> None:
        self._log: list[tuple[int, ev.AnyEvent]] = []
        self._seen_ids: dict[str, int] = {}
        self._grew = asyncio.Condition()

    async def append(self, events: Sequence[ev.Event], expected_version: int | None = None) -> int:
        job_id = ev.job_of(events)
        if events[-1].event_id in self._seen_ids:
            return self._seen_ids[events[-1].event_id]  # a retry of what went in: stored once
        if expected_version is not None and self._last_of(job_id) != expected_version:
            raise ConcurrencyConflict(job_id, expected_version)
        for event in events:  # all or nothing, as JetStream's atomic batch
            seq = len(self._log) + 1
            self._log.append((seq, ev.decode(ev.encode(event))))
            self._seen_ids[event.event_id] = seq
        async with self._grew:
            self._grew.notify_all()
        return seq

    def _last_of(self, job_id: str) -> int:
        return next((s for s, e in reversed(self._log) if e.job_id == job_id), 0)

    async def read_job(self, job_id: str, from_seq: int = 1) -> list[tuple[int, ev.AnyEvent]]:
        return [(s, e) for s, e in self._log if e.job_id == job_id and s >= from_seq]

    async def last_seq(self) -> int:
        return len(self._log)

    async def batches(
        self, after_seq: int, max_batch: int = 500
    ) -> AsyncIterator[list[tuple[int, ev.AnyEvent]]]:
        position = after_seq
        while True:
            async with self._grew:
                await self._grew.wait_for(lambda p=position: len(self._log) > p)  # type: ignore[misc]
            batch = self._log[position : position + max_batch]
            position += len(batch)
            yield batch

    async def consume(self, durable: str, handler: Handler, stop: asyncio.Event) -> None:
        delivered = 0
        while not stop.is_set():
            while delivered < len(self._log):
                seq, event = self._log[delivered]
                await handler(seq, event)
                delivered += 1
            async with self._grew:
                try:
                    await asyncio.wait_for(self._grew.wait(), timeout=0.05)
                except TimeoutError:
                    pass


class InMemoryStateStore:
    """Dicts with etcd's guarded-write, reservation and lease rules."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobView] = {}
        self.seq = 0
        self.held: dict[str, str] = {}
        self._secrets: dict[str, tuple[bytes, float]] = {}
        self._revoked: dict[str, float] = {}

    async def load_jobs(self) -> tuple[dict[str, JobView], int]:
        return dict(self.jobs), self.seq

    async def get_job(self, job_id: str) -> JobView | None:
        return self.jobs.get(job_id)

    async def save_jobs(self, jobs: Sequence[JobView], seq: int, expected_seq: int) -> bool:
        if self.seq != expected_seq:
            return False
        self.jobs.update({j.job_id: j for j in jobs})
        self.seq = seq
        return True

    async def wipe_projection(self) -> None:
        self.jobs.clear()
        self.seq = 0

    async def reserve(self, keys: Sequence[str], owner: str) -> bool:
        if any(k in self.held for k in keys):
            return False
        self.held.update({k: owner for k in keys})
        return True

    async def release_job(self, owner: str, keys: Sequence[str]) -> int:
        mine = {k for k in keys if self.held.get(k) == owner}
        for key in mine:
            del self.held[key]
        return len(mine)

    async def reservations(self, prefix: str = "") -> dict[str, str]:
        return {k: v for k, v in self.held.items() if k.startswith(prefix)}

    async def put_secret(self, name: str, value: bytes, ttl: int) -> None:
        self._secrets[name] = (value, time.monotonic() + ttl)

    async def get_secret(self, name: str) -> bytes | None:
        value, expires = self._secrets.get(name, (None, 0.0))
        return value if value is not None and time.monotonic() < expires else None

    async def delete_secret(self, name: str) -> None:
        self._secrets.pop(name, None)

    async def revoke_login(self, login_id: str, ttl: int) -> None:
        now = time.monotonic()
        self._revoked = {k: t for k, t in self._revoked.items() if t > now}
        self._revoked[login_id] = now + max(ttl, 1)

    async def login_revoked(self, login_id: str) -> bool:
        return self._revoked.get(login_id, 0.0) > time.monotonic()

    async def secret_names(self, prefix: str = "") -> list[str]:
        now = time.monotonic()
        live = (n for n, (_, expires) in self._secrets.items() if now < expires)
        return sorted(n for n in live if n.startswith(prefix))
