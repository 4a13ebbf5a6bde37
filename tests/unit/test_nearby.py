"""A service talks to its own machine's NATS server and etcd member first."""

from __future__ import annotations

from bwvisu_common.connect import etcd_members, nats_host
from bwvisu_common.nearby import is_local, local_first
from bwvisu_common.settings import parse_settings


def test_this_machines_servers_come_first_the_others_keep_their_order() -> None:
    servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222", "nats://10.0.0.4:4222"]
    ours = {"10.0.0.3"}
    expected = [servers[2], servers[0], servers[1], servers[3]]
    assert local_first(servers, nats_host, ours.__contains__) == expected
    assert local_first(servers, nats_host, lambda host: False) == servers


def test_an_address_is_local_if_it_can_be_bound_to() -> None:
    assert is_local("127.0.0.1")
    assert not is_local("192.0.2.1")  # TEST-NET-1: never an address of this machine


def test_etcd_members_put_a_loopback_member_first() -> None:
    settings = parse_settings(b'{"bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],'
                              b' "etcd-servers": ["192.0.2.1:2379", "127.0.0.1:2381"]}')
    assert etcd_members(settings) == [("127.0.0.1", 2381), ("192.0.2.1", 2379)]
    assert nats_host("10.0.0.5:4222") == "10.0.0.5"
