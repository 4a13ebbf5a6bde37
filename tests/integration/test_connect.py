"""Connecting from settings: a dead first etcd endpoint does not stop a service."""

from __future__ import annotations

import contextlib

import pytest

from bwvisu_cli.servers import free_port
from bwvisu_common.connect import open_stores
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.settings import parse_settings

pytestmark = pytest.mark.integration


def settings(nats_url: str, *etcd: str):  # type: ignore[no-untyped-def]
    import json

    return parse_settings(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],
        "nats-servers": [nats_url], "etcd-servers": list(etcd),
    }).encode())


async def test_the_first_etcd_that_answers_is_used(nats_server, etcd_server):
    dead = f"127.0.0.1:{free_port()}"
    async with contextlib.AsyncExitStack() as stack:
        _, state = await open_stores(settings(nats_server.url, dead, f"127.0.0.1:{etcd_server.port}"),
                                     stack, "test")
        assert await state.reservations("nothing-here/") == {}


async def test_no_etcd_answering_names_every_endpoint(nats_server):
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(DependencyUnavailable) as err:
            await open_stores(settings(nats_server.url, *dead), stack, "test")
    assert all(d in str(err.value) for d in dead)
