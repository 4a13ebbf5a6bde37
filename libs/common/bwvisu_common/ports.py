"""The capabilities services share: an event log, a state store, templates, a port prober, elections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from bwvisu_common.election import Term
from bwvisu_common.events import AnyEvent, Event
from bwvisu_common.read_model import JobView

Handler = Callable[[int, AnyEvent], Awaitable[None]]


class EventStore(Protocol):
    """The append-only log of job events; stream sequence numbers order everything."""

    async def append(self, events: Sequence[Event], expected_version: int | None = None) -> int:
        """Append events of ONE job in order, all or none; return the sequence of the last one.

        `expected_version` is the sequence of the job's last event the caller decided on
        (0: the job has no event yet). If another event came in between, raise
        ConcurrencyConflict and append nothing more. None: append unconditionally.
        """
        ...

    async def read_job(self, job_id: str, from_seq: int = 1) -> list[tuple[int, AnyEvent]]:
        """The job's events from stream sequence `from_seq` on, oldest first, with their sequences.

        A caller holding the job's first event (its JobSubmitted) passes that event's sequence:
        the whole history, found without scanning the stream before it."""
        ...

    def batches(self, after_seq: int, max_batch: int = 500) -> AsyncIterator[list[tuple[int, AnyEvent]]]:
        """Every event after `after_seq`, in order, forever, grouped in batches.

        A batch ends at `max_batch` events or where the stored backlog ends, so a
        caller knows it has caught up when a batch is shorter than `max_batch`.
        """
        ...

    async def last_seq(self) -> int:
        """The sequence of the newest event in the log (0 when empty)."""
        ...

    async def consume(self, durable: str, handler: Handler, stop: asyncio.Event, *,
                      concurrency: int = 1) -> None:
        """Deliver every event to `handler` at least once, remembering progress under `durable`.

        Up to `concurrency` handlers run at once, never two of one job: a job's events are
        handled one after the other, in the stream's order."""
        ...

    async def consumer_pending(self, durable: str) -> int:
        """How many events consumer `durable` has not acknowledged yet (its lag, for metrics)."""
        ...


class StateStore(Protocol):
    """The projected read model with the stream sequence it reflects, reservations and secrets."""

    async def load_jobs(self) -> tuple[dict[str, JobView], int]:
        """Every projected job and the stream sequence the projection reflects."""
        ...

    async def get_job(self, job_id: str) -> JobView | None:
        """One projected job, or None."""
        ...

    async def save_jobs(self, jobs: Sequence[JobView], seq: int, expected_seq: int) -> bool:
        """Write jobs and the new sequence atomically if the stored one is `expected_seq`."""
        ...

    async def forget_jobs(self, job_ids: Sequence[str], expected_seq: int) -> bool:
        """Remove these projected jobs if the stored sequence is `expected_seq` (it stays)."""
        ...

    async def wipe_projection(self) -> None:
        """Remove every projected job and the sequence (not reservations or secrets)."""
        ...

    async def reserve(self, keys: Sequence[str], owner: str) -> bool:
        """Reserve all keys for `owner` at once, or none of them if any is held."""
        ...

    async def release_job(self, owner: str, keys: Sequence[str]) -> int:
        """Free those of `keys` that `owner` still holds, all in one step; how many were freed.

        A key held by someone else (or by nobody) is left alone, even if it changes hands
        while this runs: a stale release never frees another job's hold. Beyond what one etcd
        transaction takes, the first keys are freed last (list first what finds the job again).
        """
        ...

    async def reservations(self, prefix: str = "") -> dict[str, str]:
        """Held reservations under `prefix`: key -> owner."""
        ...

    async def put_secret(self, name: str, value: bytes, ttl: int) -> None:
        """Store a secret that etcd forgets after `ttl` seconds."""
        ...

    async def get_secret(self, name: str) -> bytes | None:
        """A stored secret, or None once deleted or expired."""
        ...

    async def delete_secret(self, name: str) -> None:
        """Forget a secret now."""
        ...

    async def revoke_login(self, login_id: str, ttl: int) -> None:
        """Remember for `ttl` seconds that a portal login ended, for every replica and restart."""
        ...

    async def login_revoked(self, login_id: str) -> bool:
        """Whether the portal login was revoked (and the revocation has not expired yet)."""
        ...

    async def secret_names(self, prefix: str = "") -> list[str]:
        """Names of the stored secrets under `prefix` (not their values): for sweeping."""
        ...


class Templates(Protocol):
    """Where batch-script templates are kept (runner-api asks which exist, scheduler-adapter renders)."""

    def exists(self, name: str) -> bool:
        """True if a template of that (already validated) name can be rendered."""
        ...

    def load(self, name: str) -> str | None:
        """The template's text, or None if there is no such template."""
        ...


class PortProber(Protocol):
    """Whether something accepts TCP connections on host:port (`nc -z`)."""

    async def is_open(self, host: str, port: int, timeout: float = 0.5) -> bool:
        """True if a TCP connection to host:port succeeds within `timeout`."""
        ...


class Election(Protocol):
    """Which replica holds a role (the Slurm watcher, one job's submission): one at a time, through a
    lease that dies with its holder. Each replica holds a role at most once at a time."""

    async def campaign(self, role: str) -> Term:
        """Wait until this replica holds `role`; raises DependencyUnavailable if the store is gone."""
        ...

    async def try_hold(self, role: str) -> Term | None:
        """Hold `role` now if no replica does (this one included); None if one does."""
        ...

    async def resign(self, term: Term) -> None:
        """Give the role up now: the next candidate need not wait for the lease to expire."""
        ...

    async def holder(self, role: str) -> str | None:
        """The replica that holds `role` now, None if none does."""
        ...
