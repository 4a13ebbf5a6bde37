"""Lanes: work run concurrently across keys, in order within a key, with a bound on how much at once.

A consumer hands each event to the lane of its job: two jobs' events are handled at the same time,
one job's events one after the other, in the order they came.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Lanes:
    """At most `limit` pieces of work running; each key's in the order they were started."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"at least one lane, not {limit}")
        self._limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._last: dict[str, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def start(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Start `work` once a slot is free; returns then, while the work runs in the background.

        The work's exceptions are its own to handle: a failure never blocks the lane behind it."""
        await self._slots.acquire()
        before = self._last.get(key)
        task = asyncio.get_running_loop().create_task(self._run(key, before, work))
        self._last[key] = task
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, key: str, before: asyncio.Task[None] | None,
                   work: Callable[[], Awaitable[None]]) -> None:
        try:
            if before is not None:
                # The key's earlier work first; its outcome is its own business.
                with contextlib.suppress(Exception):
                    await asyncio.shield(before)
            await work()
        finally:
            self._slots.release()
            if self._last.get(key) is asyncio.current_task():
                del self._last[key]

    async def room(self) -> int:
        """How many pieces of work could start now without waiting, once at least one could."""
        await self._slots.acquire()
        self._slots.release()
        # Work that just ended may still count as running for a moment: one lane is free anyway.
        return max(1, self._limit - len(self._running))

    @property
    def busy(self) -> int:
        return len(self._running)

    async def drain(self) -> None:
        """Until every piece of work started has ended."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every piece of work still running, and wait for them to end."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*list(self._running), return_exceptions=True)
