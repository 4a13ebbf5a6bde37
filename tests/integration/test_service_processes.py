"""runner-api's and the portal's `run()` on real nats-server and etcd: they wait for the stores,
follow the read model before they answer, and stop cleanly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bwvisu_cli.servers import free_port, listening, nats_command
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.settings import Settings, load_settings
from runner_api.service import run as run_runner_api
from tests.conftest import Server, _start, _stop
from web_portal.service import run as run_portal

pytestmark = pytest.mark.integration

PASSWORD = "runner-api-password-for-tests"


def settings(tmp_path: Path, nats_url: str, etcd: Server, **web: object) -> Settings:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "bwvisu-web.password").write_text(PASSWORD)
    (secrets / "bwvisu-web.password").chmod(0o600)
    path = tmp_path / "bwvisu.json"
    path.write_text(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],
        "nats-servers": [nats_url], "etcd-servers": [f"{etcd.host}:{etcd.port}"],
        "state-dir": str(tmp_path), "credentials": {"required": False, "tls": False},
        "runner-api": {"host": "127.0.0.1", "port": free_port()},
        "web": {"host": "127.0.0.1", "port": free_port(), **web},
    }))
    return load_settings(path)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


@dataclass
class Running:
    """A service's `run()` as a task, with the event that stops it."""

    task: asyncio.Task[None]
    stop: asyncio.Event

    async def stopped(self, port: int, within: float = 10.0) -> float:
        """Set `stop`; the seconds until `run()` returned, its port closed."""
        self.stop.set()
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(self.task, within)
        assert not listening("127.0.0.1", port)
        return asyncio.get_running_loop().time() - started


@contextlib.asynccontextmanager
async def running(run: Callable[..., Coroutine[Any, Any, None]], conf: Settings) -> AsyncIterator[Running]:
    stop = asyncio.Event()
    service = Running(asyncio.create_task(run(conf, stop=stop)), stop)
    try:
        yield service
    finally:
        stop.set()
        service.task.cancel()


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(url, timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


async def test_runner_api_waits_for_nats_then_serves_and_stops(tmp_path, etcd_server, caplog):
    nats_port = free_port()
    conf = settings(tmp_path, f"nats://127.0.0.1:{nats_port}", etcd_server)
    api = f"http://127.0.0.1:{conf.runner_api.port}"
    nats = None

    async def retrying() -> bool:
        return "retrying in 2 s" in caplog.text

    # The etcd server is shared: earlier tests may have left a read model under the default prefix.
    store = await EtcdStateStore.connect(etcd_server.host, etcd_server.port)
    try:
        await store.wipe_projection()
    finally:
        await store.close()
    try:
        async with running(run_runner_api, conf) as service:
            await until(retrying)
            assert not service.task.done(), "no NATS yet is no reason to stop"
            assert not listening("127.0.0.1", conf.runner_api.port), "no answers before it is connected"
            nats = await asyncio.to_thread(_start, nats_command("127.0.0.1", nats_port, tmp_path / "js"),
                                           "127.0.0.1", nats_port, "nats-server", tmp_path / "nats.log")
            await until(lambda: answers(f"{api}/healthz"))
            auth = "Basic " + base64.b64encode(f"bwvisu-web:{PASSWORD}".encode()).decode()
            async with httpx.AsyncClient() as client:
                r = await client.get(f"{api}/jobs", headers={"Authorization": auth})
            assert r.status_code == 200 and r.json() == {"jobs": []}
            await service.stopped(conf.runner_api.port)
    finally:
        if nats is not None:
            await asyncio.to_thread(_stop, nats)


async def test_the_portal_serves_once_connected_and_stops(tmp_path, nats_server, etcd_server):
    conf = settings(tmp_path, nats_server.url, etcd_server)
    portal = f"http://127.0.0.1:{conf.web.port}"
    async with running(run_portal, conf) as service:
        await until(lambda: answers(f"{portal}/healthz"))
        assert await answers(f"{portal}/login")
        await service.stopped(conf.web.port)


async def test_an_open_event_stream_does_not_hold_the_portal_past_its_grace(tmp_path, nats_server,
                                                                            etcd_server):
    sso = {"auth": "header", "trusted-proxies": ["127.0.0.1"]}
    conf = settings(tmp_path, nats_server.url, etcd_server, **sso)
    portal = f"http://127.0.0.1:{conf.web.port}"
    async with running(run_portal, conf) as service:
        await until(lambda: answers(f"{portal}/healthz"))
        async with httpx.AsyncClient() as client, client.stream(
                "GET", f"{portal}/sessions/events", headers={"X-Remote-User": "alice"}, timeout=30) as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("text/event-stream")
            took = await service.stopped(conf.web.port)
    assert took < 5, "two seconds of grace, not more"
