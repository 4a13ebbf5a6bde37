"""Batch-script templates on disk, and where a job's script writes its output.

runner-api asks whether a template exists, scheduler-adapter renders it, the portal
shows a job's log: all three follow these two rules.
"""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".sh.mustache"
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "templates"


def job_log_path(home_prefix: str, uid: str, job_id: str) -> str:
    """`#SBATCH --output` of every job: `<bwvisu-home-prefix>/<uid>/bwvisu-job-<id>.out`."""
    return f"{home_prefix.rstrip('/')}/{uid}/bwvisu-job-{job_id}.out"


class FileTemplates:
    """Templates (the port) as `<dir>/<name>.sh.mustache`, read on every use so that edits apply at once."""

    def __init__(self, directory: str | Path = "") -> None:
        self.directory = Path(directory) if directory else DEFAULT_DIR

    def path(self, name: str) -> Path:
        return self.directory / f"{name}{SUFFIX}"

    def names(self) -> list[str]:
        return sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}"))

    def exists(self, name: str) -> bool:
        return self.load(name) is not None

    def load(self, name: str) -> str | None:
        # Names are checked (no '/', '\\', '..') before they get here; refuse them anyway.
        if not name or any(c in name for c in "/\\\0") or name.startswith("."):
            return None
        try:
            return self.path(name).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
