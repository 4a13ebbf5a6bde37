"""Secrets kept in files (passwords, the portal's cookie key, service credentials): made once, mode 600.

Every secret file bwvisu reads passes through `read_secret_file`, which refuses one that users other
than its owner (and its group, read-only) could read or change.
"""

from __future__ import annotations

import os
import secrets
import stat
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


def read_secret_file(path: str | Path, field: str, min_length: int = 1, *,
                     group_readable: bool = True) -> str:
    """The secret in `path`; a ConfigError naming the config `field` when it is missing or short.

    `group_readable=False` for a service's own credential: the services share one group, so a
    group-readable credential would let each of them act as every other."""
    if not str(path):
        raise ConfigError(f"{field}: required")
    try:
        check_secret_mode(path, field, group_readable=group_readable)
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc.strerror}") from exc
    if len(secret) < min_length:
        raise ConfigError(f"{field}: {path} holds fewer than {min_length} characters")
    return secret


# Owner read/write, group read at most: 0600, 0400, 0640 or 0440.
_LOOSE_BITS = stat.S_IWGRP | stat.S_IXGRP | stat.S_IRWXO


def check_secret_mode(path: str | Path, field: str, *, group_readable: bool = True) -> None:
    """A ConfigError naming the file when its mode lets others (or the group) do more than read it."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    loose = _LOOSE_BITS if group_readable else _LOOSE_BITS | stat.S_IRGRP
    if mode & loose:
        allowed = "0600 or 0640" if group_readable else "0600 (its owner's alone)"
        raise ConfigError(
            f"{field}: secret file {path} has mode {mode:04o}; allowed is {allowed} (chmod 600 {path})"
        )
