"""FakeAuthenticator: the portal's Authenticator (PAM) for unit tests."""

from __future__ import annotations

from collections.abc import Mapping

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


class FakeAuthenticator:
    """Users and their passwords; every user asked about is recorded."""

    def __init__(self, users: Mapping[str, str] = USERS) -> None:
        self.users = dict(users)
        self.asked: list[str] = []

    async def authenticate(self, user: str, password: str) -> bool:
        self.asked.append(user)
        return self.users.get(user) == password
