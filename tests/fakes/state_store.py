"""InMemoryStateStore: the StateStore for unit tests; tests/contract/test_state_store.py holds it to etcd."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bwvisu_common.read_model import JobView


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

    async def forget_jobs(self, job_ids: Sequence[str], expected_seq: int) -> bool:
        if self.seq != expected_seq:
            return False
        for job_id in job_ids:
            self.jobs.pop(job_id, None)
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
