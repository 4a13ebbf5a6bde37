"""`bwvisu up` on one of several middleware nodes starts this node's NATS server and etcd member."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bwvisu_cli.cluster import etcd_member, is_clustered, nats_member
from bwvisu_common.errors import BwvisuError
from bwvisu_common.settings import parse_settings

OTHERS = ["192.0.2.41", "192.0.2.42"]  # documentation addresses: never this machine's


def settings(local: str | None = "127.0.0.1") -> object:
    ips = ([local] if local else []) + OTHERS
    data = {
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.2", "user": "bwvisu", "port": 22}],
        "nats-servers": [f"nats://{ip}:4222" for ip in ips], "etcd-servers": [f"{ip}:2379" for ip in ips],
    }
    return parse_settings(json.dumps(data).encode(), "bwvisu.json")


def test_the_local_nats_server_routes_to_the_others():
    argv, address = nats_member(settings(), Path("/s"), Path("/c"))  # type: ignore[arg-type]
    assert address == ("127.0.0.1", 4222)
    assert argv[argv.index("--server_name") + 1] == "bwvisu-nats-0"
    assert argv[argv.index("--routes") + 1] == "nats://192.0.2.41:6222,nats://192.0.2.42:6222"


def test_every_node_derives_the_same_etcd_cluster_and_names_itself_by_its_place():
    argv, address = etcd_member(settings(), Path("/d"), None)  # type: ignore[arg-type]
    assert address == ("127.0.0.1", 2379)
    assert argv[argv.index("--name") + 1] == "bwvisu-0"
    assert argv[argv.index("--initial-cluster") + 1] == (
        "bwvisu-0=http://127.0.0.1:2380,bwvisu-1=http://192.0.2.41:2380,bwvisu-2=http://192.0.2.42:2380")


def test_a_node_that_is_none_of_the_listed_servers_is_told():
    assert is_clustered(settings(None))  # type: ignore[arg-type]
    with pytest.raises(BwvisuError, match="nats-servers"):
        nats_member(settings(None), Path("/s"), Path("/c"))  # type: ignore[arg-type]
