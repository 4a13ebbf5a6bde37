"""The portal host's own facts: unix groups, and whether a TCP address answers."""

from __future__ import annotations

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
