"""Who is on the other end: the peer, or what our own trusted proxies say about it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(proxies: Iterable[str]) -> list[Network]:
    """`web.trusted-proxies` as networks; ValueError naming the bad entry."""
    networks = []
    for entry in proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not an address or network: {entry!r} ({exc})") from None
    return networks


def is_trusted(address: str | None, trusted: Sequence[Network]) -> bool:
    ip = _ip(address) if address else None
    return ip is not None and any(ip in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The peer, or the right-most `X-Forwarded-For` hop that is not a trusted proxy.

    Only hops our proxies appended can be believed; everything left of the first untrusted
    hop may be made up by the client. Several header lines count as one comma-joined list.
    """
    address = peer or "unknown"
    if not is_trusted(peer, trusted):
        return address
    hops = [h.strip() for line in forwarded_for for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        ip = _ip(hop)
        address = str(ip) if ip is not None else hop[:64]
        if ip is None or not any(ip in net for net in trusted):
            break
    return address


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: bare, `[v6]:port` or `v4:port`."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def gateway_address(text: str, trusted: Sequence[Network]) -> str | None:
    """The client's address as a gateway sees it (an IPv4 client of a dual-stack socket is
    IPv4); None where no client can be named (a malformed hop, or only our own proxies)."""
    address = _ip(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address is None or any(address in net for net in trusted):
        return None
    return str(address)
