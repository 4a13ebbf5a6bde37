"""FakeTemplateCatalog: runner-api's TemplateCatalog for unit tests."""

from __future__ import annotations

from collections.abc import Iterable


class FakeTemplateCatalog:
    """The templates named in `names` exist, no other."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = set(names)

    def exists(self, name: str) -> bool:
        return name in self.names
