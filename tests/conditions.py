"""Waiting on a condition instead of sleeping a fixed time and hoping it happened meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 5.0,
                     interval: float = 0.01) -> None:
    """Return once `check()` holds; fail the test naming `what` if it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(interval)
