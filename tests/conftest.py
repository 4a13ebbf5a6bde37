"""Real nats-server and etcd processes on free ports, shared by the integration tests."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bwvisu_cli.servers import etcd_command, free_port, nats_command, wait_listening
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats

LAYERS = ("unit", "contract", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fast layers first, so a broken unit fails in seconds, not after the minicluster.

    Tests that take the whole cluster down and up run after every other test: a running
    bwvisu (agents inside the gateways' namespaces) would not survive them."""

    def order(item: pytest.Item) -> tuple[bool, int]:
        parts = Path(str(item.fspath)).parts
        layer = next((LAYERS.index(p) for p in parts if p in LAYERS), len(LAYERS))
        return item.get_closest_marker("cluster_teardown") is not None, layer

    items.sort(key=order)


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"


def _start(cmd: list[str], host: str, port: int, what: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(host, port, what, alive=lambda: proc.poll() is None)
    except Exception:
        proc.kill()
        raise RuntimeError(f"{what} did not start; its log:\n{log.read_text()[-3000:]}") from None
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("nats")
    port = free_port()
    proc = _start(nats_command("127.0.0.1", port, base / "js"), "127.0.0.1", port, "nats-server",
                  base / "nats.log")
    yield Server("127.0.0.1", port, proc)
    _stop(proc)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("etcd")
    port, peer = free_port(), free_port()
    proc = _start(etcd_command("127.0.0.1", port, peer, base / "data"), "127.0.0.1", port, "etcd",
                  base / "etcd.log")
    yield Server("127.0.0.1", port, proc)
    _stop(proc)


@pytest.fixture
async def event_store(nats_server: Server) -> AsyncIterator[JetStreamEventStore]:
    """A JetStream store on a fresh stream, so tests never see each other's events."""
    nc = await connect_nats([nats_server.url], "tests")
    js = nc.jetstream()
    store = JetStreamEventStore(nc)
    await store.ensure_stream()
    try:
        yield store
    finally:
        await js.purge_stream("BWVISU_EVENTS")
        await nc.drain()


@pytest.fixture
async def state_store(etcd_server: Server) -> AsyncIterator[EtcdStateStore]:
    """An etcd store under a prefix of its own."""
    store = await EtcdStateStore.connect(etcd_server.host, etcd_server.port,
                                         prefix=f"/test-{uuid.uuid4().hex[:8]}/")
    try:
        yield store
    finally:
        await store.close()
