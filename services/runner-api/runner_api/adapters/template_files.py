"""TemplateFiles: the templates directory on disk."""

from __future__ import annotations

from pathlib import Path

TEMPLATE_SUFFIX = ".mustache"


class TemplateFiles:
    """A template named N is the file N.mustache in the templates directory."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def exists(self, name: str) -> bool:
        return (self._dir / f"{name}{TEMPLATE_SUFFIX}").is_file()
