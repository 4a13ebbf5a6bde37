"""FakeTemplates: the Templates port (bwvisu_common.ports) for unit tests."""

from __future__ import annotations

from collections.abc import Iterable


class FakeTemplates:
    """The templates named in `names` exist, each a bare bash script; no other does."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = set(names)

    def exists(self, name: str) -> bool:
        return name in self.names

    def load(self, name: str) -> str | None:
        return "#!/bin/bash\n" if name in self.names else None
