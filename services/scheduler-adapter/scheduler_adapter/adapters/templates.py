"""FileTemplates: batch-script templates as `<name>.sh.mustache` files in one directory."""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".sh.mustache"
DEFAULT_DIR = Path(__file__).resolve().parents[4] / "templates"


class FileTemplates:
    """Reads `<dir>/<name>.sh.mustache` on every submit, so edited templates apply at once."""

    def __init__(self, directory: str | Path = "") -> None:
        self.directory = Path(directory) if directory else DEFAULT_DIR

    def path(self, name: str) -> Path:
        return self.directory / f"{name}{SUFFIX}"

    def names(self) -> list[str]:
        return sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}"))

    def load(self, name: str) -> str | None:
        # Names are checked (no '/', '\\', '..') before they get here; refuse them anyway.
        if not name or any(c in name for c in "/\\\0") or name.startswith("."):
            return None
        try:
            return self.path(name).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
