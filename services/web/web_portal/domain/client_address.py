"""Which address a person's browser connects from, as a gateway will see it. Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    address of `X-Forwarded-For` that is not itself a trusted proxy. None if it cannot be told.

    Only the right end of the header is believed: a client may put anything on the left.
    """
    current = _address(peer or "")
    hops = [h for value in forwarded_for for h in value.split(",")]
    while current is not None and any(current in net for net in trusted) and hops:
        current = _address(hops.pop())
    if current is None or any(current in net for net in trusted):
        return None  # a malformed hop, or only proxies: no client to name
    return str(current)
