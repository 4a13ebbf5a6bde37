"""FakeProber: the port prober (gateway agent's PortProber, portal's Prober) for unit tests;
tests/contract/test_prober.py holds it to TcpProber."""

from __future__ import annotations

from collections.abc import Iterable


class FakeProber:
    """The (host, port) pairs in `open_ports` answer, no other; every probe is recorded."""

    def __init__(self, open_ports: Iterable[tuple[str, int]] = ()) -> None:
        self.open_ports: set[tuple[str, int]] = set(open_ports)
        self.probed: list[tuple[str, int]] = []

    async def is_open(self, host: str, port: int, timeout: float = 0.5) -> bool:
        self.probed.append((host, port))
        return (host, port) in self.open_ports
