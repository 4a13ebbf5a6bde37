"""Which of a cluster's servers run on this machine: a service talks to those first.

With NATS and etcd on every middleware node, a service that uses its own node's server and member
loses them only together with its node. One that used another node's (the first listed, say) would
stall, with the services of every other node, each time that one node drops off the network.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def is_local(host: str) -> bool:
    """Whether `host` is one of this machine's addresses (it can be bound to)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


def local_first(items: Sequence[T], host: Callable[[T], str],
                local: Callable[[str], bool] = is_local) -> list[T]:
    """`items` with those on this machine first; otherwise in the order given."""
    return sorted(items, key=lambda item: not local(host(item)))
