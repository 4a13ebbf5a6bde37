"""TcpProber: a TCP connect, like `nc -z` (gateway agents probe forwarded ports with it, the
portal's admin page the command nodes' sshd)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProber:
    """Open and close a TCP connection; refused, unreachable or slow all mean closed."""

    async def is_open(self, host: str, port: int, timeout: float = 0.5) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
