"""A throwaway network namespace, for tests and benchmarks that need a real iptables."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_netns(prefix: str = "bwvtest") -> Iterator[str]:
    """A fresh, empty netns named `<prefix>-<random>`, deleted afterwards even on failure."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
