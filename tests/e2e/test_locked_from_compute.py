"""From a compute node, as a cluster user: NATS and etcd cannot be reached at all, keyhole-api can."""

from __future__ import annotations

import subprocess

import pytest

from bwvisu_common.settings import host_port

pytestmark = pytest.mark.e2e

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except OSError as exc:
    print("closed", exc)
"""


def connect_as_alice(node: str, host: str, port: int) -> str:
    out = subprocess.run(["ip", "netns", "exec", node, "sudo", "-n", "-u", "alice", "python3", "-c", CONNECT,
                          host, str(port)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_compute_nodes_reach_keyhole_api_but_not_nats_or_etcd(bwvisu_system, minicluster):
    settings = bwvisu_system.settings
    nats = host_port(settings.nats_servers[0], 4222)
    etcd = host_port(settings.etcd_servers[0], 2379)
    keyhole = host_port(settings.keyholed_servers[0], 4243)
    for node in minicluster.compute_nodes:
        assert connect_as_alice(node, *keyhole) == "open", node
        assert connect_as_alice(node, *nats).startswith("closed"), (node, nats)
        assert connect_as_alice(node, *etcd).startswith("closed"), (node, etcd)
    # The same ports answer from a gateway, whose agent needs them.
    gateway = next(n for n, r in minicluster.roles.items() if r == "gateway")
    out = subprocess.run(["ip", "netns", "exec", gateway, "python3", "-c", CONNECT, *map(str, nats)],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("open"), out
