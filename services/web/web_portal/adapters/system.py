"""The portal host's own facts: unix groups, and whether a TCP address answers."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import pwd


class UnixGroups:
    """Group membership from the host's group and passwd databases (grp/pwd)."""

    def is_member(self, user: str, group: str) -> bool:
        try:
            entry = grp.getgrnam(group)
        except KeyError:
            return False
        if user in entry.gr_mem:
            return True
        try:
            return pwd.getpwnam(user).pw_gid == entry.gr_gid
        except KeyError:
            return False


class TcpProber:
    """A TCP connect with a timeout: the command node's sshd answers, or it does not."""

    async def answers(self, host: str, port: int, timeout: float) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
