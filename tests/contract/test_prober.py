"""One set of expectations for every port prober: FakeProber and TcpProber, on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bwvisu_cli.servers import free_port
from bwvisu_common.adapters.tcp_prober import TcpProber
from tests.fakes.prober import FakeProber

HOST = "127.0.0.1"


class ProberContract:
    """What the gateway agent and the portal rely on from `is_open(host, port, timeout)`."""

    @pytest.fixture
    def prober(self) -> FakeProber | TcpProber:  # pragma: no cover - overridden
        raise NotImplementedError

    def listener_changed(self, prober: FakeProber | TcpProber, port: int, listening: bool) -> None:
        """Tell a fake what a real prober would find out itself."""

    @asynccontextmanager
    async def listening(self, prober: FakeProber | TcpProber) -> AsyncIterator[int]:
        async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(hang_up, HOST, 0)
        port = int(server.sockets[0].getsockname()[1])
        self.listener_changed(prober, port, True)
        try:
            yield port
        finally:
            server.close()
            await server.wait_closed()
            self.listener_changed(prober, port, False)

    async def test_a_port_with_a_listener_is_open(self, prober) -> None:
        async with self.listening(prober) as port:
            assert await prober.is_open(HOST, port, 2.0) is True
            assert await prober.is_open(HOST, port) is True, "the timeout has a default"

    async def test_a_port_nobody_listens_on_is_closed(self, prober) -> None:
        async with self.listening(prober) as port:
            other = free_port(HOST)
            assert other != port
            assert await prober.is_open(HOST, other, 2.0) is False, "only the listening port is open"

    async def test_a_port_is_closed_once_its_listener_is_gone(self, prober) -> None:
        async with self.listening(prober) as port:
            pass
        assert await prober.is_open(HOST, port, 2.0) is False


class TestFakeProber(ProberContract):
    @pytest.fixture
    def prober(self) -> FakeProber:
        return FakeProber()

    def listener_changed(self, prober: FakeProber | TcpProber, port: int, listening: bool) -> None:
        assert isinstance(prober, FakeProber)
        (prober.open_ports.add if listening else prober.open_ports.discard)((HOST, port))


class TestTcpProber(ProberContract):
    @pytest.fixture
    def prober(self) -> TcpProber:
        return TcpProber()
