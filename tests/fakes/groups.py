"""FakeGroups: the portal's GroupDirectory for unit tests."""

from __future__ import annotations

from collections.abc import Mapping


class FakeGroups:
    """Members by group name."""

    def __init__(self, members: Mapping[str, set[str]]) -> None:
        self.members = members

    def is_member(self, user: str, group: str) -> bool:
        return user in self.members.get(group, set())
