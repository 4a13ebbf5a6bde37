"""ScancelBatches: cancels of one user that arrive together go to Slurm as one scancel of many ids."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

# Sends one scancel for a user's ids; what each id came to (None: cancelled or over already).
Send = Callable[[str, Sequence[str]], Awaitable[dict[str, BaseException | None]]]


class ScancelBatches:
    """Collects a user's cancels for `window` seconds (or until `most` ids), then sends them at once."""

    def __init__(self, send: Send, *, window: float = 0.05, most: int = 200) -> None:
        self._send = send
        self._window = window
        self._most = most
        self._open: dict[str, dict[str, list[asyncio.Future[None]]]] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def cancel(self, uid: str, slurm_id: str) -> None:
        """Returns once the batch holding this id was sent; raises what that id came to."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        batch = self._open.get(uid)
        if batch is None:
            batch = self._open[uid] = {}
            loop.call_later(self._window, self._close, uid, batch)
        batch.setdefault(slurm_id, []).append(done)
        if len(batch) >= self._most:
            self._close(uid, batch)
        await done

    def _close(self, uid: str, batch: dict[str, list[asyncio.Future[None]]]) -> None:
        if self._open.get(uid) is not batch:
            return  # sent already (it filled up before its window ended)
        del self._open[uid]
        task = asyncio.get_running_loop().create_task(self._deliver(uid, batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, uid: str, batch: dict[str, list[asyncio.Future[None]]]) -> None:
        try:
            outcomes = await self._send(uid, list(batch))
        except Exception as exc:  # nothing is known of any id: each waiter gets the error
            outcomes = dict.fromkeys(batch, exc)
        except asyncio.CancelledError:
            for waiters in batch.values():
                for done in waiters:
                    done.cancel()
            raise
        for slurm_id, waiters in batch.items():
            failure = outcomes.get(slurm_id)
            for done in waiters:
                if done.done():
                    continue  # its caller stopped waiting
                if failure is None:
                    done.set_result(None)
                else:
                    done.set_exception(failure)

    async def close(self) -> None:
        """Stop the batches being sent; their callers get CancelledError."""
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*list(self._sending), return_exceptions=True)
