"""The keyhole-api process on real NATS and etcd: it serves, hears heartbeats, and stops cleanly."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from bwvisu_cli.servers import free_port
from bwvisu_common.heartbeats import heartbeat_subject
from bwvisu_common.settings import parse_settings
from keyhole_api.service import run

pytestmark = pytest.mark.integration


async def _until(check, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    """The first truthy answer of `check()`, asked until `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            answer = await check()
        except httpx.TransportError:
            answer = None
        if answer or asyncio.get_running_loop().time() > deadline:
            return answer
        await asyncio.sleep(0.1)


async def test_the_process_serves_follows_heartbeats_and_stops_on_request(nats_server, etcd_server,
                                                                         event_store) -> None:
    port = free_port()
    settings = parse_settings(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.10"}],
        "gateway-nodes": [{"name": "gw0", "internal-ip": "10.0.0.30", "external-ip": "10.0.0.30"}],
        "nats-servers": [nats_server.url], "etcd-servers": [f"{etcd_server.host}:{etcd_server.port}"],
        "keyhole-api": {"host": "127.0.0.1", "port": port},
    }).encode())
    stop = asyncio.Event()
    process = asyncio.create_task(run(settings, stop=stop))
    nc = event_store.nats
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

        async def alive() -> list[str]:
            await nc.publish(heartbeat_subject("gw0"), json.dumps({"gateway": "gw0"}).encode())
            return (await client.get("/healthz")).json()["gateways-alive"]

        assert await _until(alive) == ["gw0"], "a heartbeat on the gateway's subject counts"
        stop.set()
        await asyncio.wait_for(process, 15)  # returns: no task died, nothing left running

        async def refused() -> bool:
            try:
                await client.get("/healthz")
            except httpx.TransportError:
                return True
            return False

        assert await _until(refused), "the server is gone once the process stopped"
