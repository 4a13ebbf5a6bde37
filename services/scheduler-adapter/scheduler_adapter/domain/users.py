"""Who may be a job's user: a real person's account, never a system or the middleware's own. Pure."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

# `id -- alice` prints `uid=1001(alice) gid=1001(alice) groups=1001(alice),27(sudo)`; the word
# "groups" is translated under some locales, so only the shape is relied upon.
_ID = re.compile(r"uid=(\d+)\(([^)]*)\) gid=(\d+)\(([^)]*)\)(?: [^=]+=(.*))?", re.ASCII)
_GROUP = re.compile(r"\d+\(([^)]*)\)", re.ASCII)


@dataclass(frozen=True, slots=True)
class Identity:
    """A user as the command node knows them."""

    name: str
    uid: int
    groups: frozenset[str]


def parse_id(text: str) -> Identity:
    """`id -- <user>`'s one line as an Identity; ValueError for anything else."""
    match = _ID.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"unexpected output of id: {text.strip()[:80]!r}")
    name, uid, primary, listed = match.group(2), int(match.group(1)), match.group(4), match.group(5)
    groups = {primary, *_GROUP.findall(listed or "")}
    return Identity(name=name, uid=uid, groups=frozenset(groups))


@dataclass(frozen=True, slots=True)
class UserPolicy:
    """The site's rule for job users: a uid range and/or a group; some accounts never."""

    min_uid: int = 1000
    # UID_MAX of login.defs: above it live `nobody` (65534) and other accounts nobody logs in as.
    max_uid: int = 60000
    required_group: str = ""
    # The accounts the middleware logs in as on its command nodes: they hold the sudo rule.
    middleware_accounts: Collection[str] = ()

    def refusal(self, who: Identity) -> str | None:
        """Why `who` may not run jobs through bwvisu, or None if they may."""
        if who.uid == 0 or who.name == "root":
            return f"{who.name} is the superuser"
        if who.name in self.middleware_accounts:
            return f"{who.name} is the middleware's own account"
        if who.uid < self.min_uid:
            return f"uid {who.uid} of {who.name} is below the site's minimum {self.min_uid}"
        if who.uid > self.max_uid:
            return f"uid {who.uid} of {who.name} is above the site's maximum {self.max_uid}"
        if self.required_group and self.required_group not in who.groups:
            return f"{who.name} is not a member of {self.required_group}"
        return None


def user_refusal(uid: str, who: Identity | None, policy: UserPolicy) -> str | None:
    """Why `uid` may not run jobs, given what the cluster says about them (None: no such user)."""
    if who is None:
        return f"no such user on the cluster: {uid}"
    return policy.refusal(who)
