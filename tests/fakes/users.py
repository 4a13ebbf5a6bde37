"""FakeUserDirectory: runner-api's UserDirectory for unit tests; tests/contract/test_cluster_queries.py
holds it to NatsUserDirectory."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bwvisu_common.errors import DependencyUnavailable


class FakeUserDirectory:
    """Users in `users` may run jobs, those in `refused` may not (and why); `down` = nobody to ask.
    Every question is recorded in `asked`."""

    def __init__(self, users: Iterable[str], refused: Mapping[str, str] | None = None) -> None:
        self.users = set(users)
        self.refused = dict(refused or {})
        self.down = False
        self.asked: list[str] = []

    async def refusal(self, uid: str) -> str | None:
        self.asked.append(uid)
        if self.down:
            raise DependencyUnavailable("no command node answers")
        if uid in self.refused:
            return self.refused[uid]
        return None if uid in self.users else f"no such user on the cluster: {uid}"
