"""InMemoryEventStore: the EventStore for unit tests; tests/contract/test_event_store.py holds it
to JetStream."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from bwvisu_common import events as ev
from bwvisu_common.errors import ConcurrencyConflict
from bwvisu_common.lanes import Lanes
from bwvisu_common.logs import about_job
from bwvisu_common.ports import Handler

log = logging.getLogger(__name__)


@dataclass
class _Durable:
    """What a durable consumer has done, kept across its restarts as JetStream keeps it."""

    acked: set[int] = field(default_factory=set)
    taken: set[int] = field(default_factory=set)  # with a running handler, not acked yet
    retry_at: dict[int, float] = field(default_factory=dict)  # refused: not again before then
    floor: int = 0  # every event before this index of the log is acked


class InMemoryEventStore:
    """A list of (seq, event) with JetStream's per-job expected-sequence and dedup rules."""

    def __init__(self, redeliver_delay: float = 0.05) -> None:
        self.redeliver_delay = redeliver_delay
        self._durables: dict[str, _Durable] = {}
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

    async def consume(self, durable: str, handler: Handler, stop: asyncio.Event, *,
                      concurrency: int = 1) -> None:
        """As JetStream's durable pull consumer: progress kept per name, an event whose handler
        raised comes again after `redeliver_delay`, consumers sharing a name share the work;
        up to `concurrency` events handled at once, one job's in order."""
        state = self._durables.setdefault(durable, _Durable())
        loop = asyncio.get_running_loop()
        lanes = Lanes(concurrency)

        async def handle(seq: int, event: ev.AnyEvent) -> None:
            try:
                with about_job(event.job_id):
                    await handler(seq, event)
            except Exception:
                log.exception("consumer %s: handler failed on event %d; redelivering", durable, seq)
                state.retry_at[seq] = loop.time() + self.redeliver_delay
            else:
                state.acked.add(seq)
                state.retry_at.pop(seq, None)
            finally:
                state.taken.discard(seq)
                async with self._grew:
                    self._grew.notify_all()  # an acked event may free the next of its job

        try:
            while not stop.is_set():
                due = self._next_due(state, loop.time())
                if due is None:
                    async with self._grew:
                        try:
                            await asyncio.wait_for(self._grew.wait(), timeout=0.02)
                        except TimeoutError:
                            pass  # a refused event may be due again, or stop set
                    continue
                seq, event = due
                state.taken.add(seq)
                await lanes.start(event.job_id, functools.partial(handle, seq, event))
            await lanes.drain()
        finally:
            await lanes.cancel()

    async def consumer_pending(self, durable: str) -> int:
        return len(self._log) - len(self._durables.setdefault(durable, _Durable()).acked)

    def _next_due(self, state: _Durable, now: float) -> tuple[int, ev.AnyEvent] | None:
        while state.floor < len(self._log) and self._log[state.floor][0] in state.acked:
            state.floor += 1
        for seq, event in self._log[state.floor:]:
            if seq not in state.acked and seq not in state.taken and state.retry_at.get(seq, 0.0) <= now:
                return seq, event
        return None
