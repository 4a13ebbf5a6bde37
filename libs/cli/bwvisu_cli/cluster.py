"""`bwvisu up` on one node of several: its NATS server and etcd member join the others.

When the config lists more than one NATS server (or etcd member), each middleware node runs
`bwvisu up` with the same lists; the entry whose address is this machine's is the one it starts.
Members are named after their place in the list, so every node derives the same cluster.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
from aetcd import rpc

from bwvisu_cli.etcd_auth import set_up_etcd_auth
from bwvisu_cli.servers import etcd_command, nats_command
from bwvisu_common.errors import BwvisuError, DependencyUnavailable
from bwvisu_common.nearby import is_local
from bwvisu_common.settings import Settings, host_port

NATS_ROUTE_PORT = 6222
ETCD_PEER_PORT = 2380


def is_clustered(settings: Settings) -> bool:
    return len(settings.nats_servers) > 1 or len(settings.etcd_servers) > 1


def local_index(addresses: list[tuple[str, int]], what: str) -> int:
    """Which of the listed servers this machine is (by binding to its address)."""
    for index, (host, _port) in enumerate(addresses):
        if is_local(host):
            return index
    raise BwvisuError(f"none of the {what} listed in the config is on this machine")


def local_index_or_none(settings: Settings) -> int | None:
    servers = [host_port(a, 4222, "nats-servers") for a in settings.nats_servers]
    return next((i for i, (host, _) in enumerate(servers) if is_local(host)), None)


def nats_member(settings: Settings, store_dir: Path, config: Path) -> tuple[list[str], tuple[str, int]]:
    servers = [host_port(a, 4222, "nats-servers") for a in settings.nats_servers]
    me = local_index(servers, "nats-servers")
    host, port = servers[me]
    routes = ",".join(f"nats://{h}:{NATS_ROUTE_PORT}" for i, (h, _) in enumerate(servers) if i != me)
    argv = nats_command(host, port, store_dir, config)
    name_at = argv.index("--server_name") + 1
    argv[name_at] = f"bwvisu-nats-{me}"
    argv += ["--cluster_name", "bwvisu", "--cluster", f"nats://{host}:{NATS_ROUTE_PORT}", "--routes", routes]
    return argv, (host, port)


def etcd_member(settings: Settings, data_dir: Path, tls: Path | None) -> tuple[list[str], tuple[str, int]]:
    members = [host_port(a, 2379, "etcd-servers") for a in settings.etcd_servers]
    me = local_index(members, "etcd-servers")
    host, port = members[me]
    argv = etcd_command(host, port, ETCD_PEER_PORT, data_dir, tls)
    peer = f"http://{host}:{ETCD_PEER_PORT}"
    initial = ",".join(f"bwvisu-{i}=http://{h}:{ETCD_PEER_PORT}" for i, (h, _) in enumerate(members))
    replaced = {"--name": f"bwvisu-{me}", "--listen-peer-urls": peer,
                "--initial-advertise-peer-urls": peer, "--initial-cluster": initial}
    for flag, value in replaced.items():
        argv[argv.index(flag) + 1] = value
    return argv, (host, port)


async def etcd_auth_as_member(settings: Settings, host: str, port: int, first: bool,
                              timeout: float = 120.0) -> None:
    """After this node's etcd member started: the first node makes the users once the cluster has
    a majority (its calls time out until then); the others wait until auth is on, so that their
    services log in to an etcd that knows them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if first:
                await set_up_etcd_auth(settings, host, port)
                return
            if await etcd_auth_enabled(settings, host, port):
                return
        except DependencyUnavailable:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise DependencyUnavailable(f"etcd at {host}:{port}: auth not on within {timeout:.0f} s")
        await asyncio.sleep(1.0)


async def etcd_auth_enabled(settings: Settings, host: str, port: int) -> bool:
    target = f"{host}:{port}"
    ca_file = settings.credentials.ca_file
    if ca_file:
        pem = await asyncio.to_thread(Path(ca_file).read_bytes)
        channel = rpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=pem))
    else:
        channel = rpc.insecure_channel(target)
    try:
        status = await rpc.AuthStub(channel).AuthStatus(rpc.AuthStatusRequest(), timeout=5)
        return bool(status.enabled)
    except grpc.aio.AioRpcError as exc:
        # With auth on, etcd refuses even this question from a client that did not log in.
        if "user name is empty" in (exc.details() or ""):
            return True
        raise DependencyUnavailable(f"etcd at {target}: {exc.details()}") from exc
    except grpc.RpcError as exc:
        raise DependencyUnavailable(f"etcd at {target}: {exc}") from exc
    finally:
        await channel.close()
