"""Secrets kept in files (the runner-api password, the portal's cookie key): made once, mode 600."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bwvisu_common.errors import ConfigError


def ensure_secret_file(path: Path, nbytes: int = 24) -> bool:
    """Create a random secret file (mode 600) unless one exists; True if it was created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False  # another process made it first
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(nbytes) + "\n")
    return True


def read_secret_file(path: str | Path, field: str, min_length: int = 1) -> str:
    """The secret in `path`; a ConfigError naming the config `field` when it is missing or short."""
    if not str(path):
        raise ConfigError(f"{field}: required")
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc.strerror}") from exc
    if len(secret) < min_length:
        raise ConfigError(f"{field}: {path} holds fewer than {min_length} characters")
    return secret
