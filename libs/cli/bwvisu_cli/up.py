"""`bwvisu up`: NATS, etcd, the projector and every service that exists, under one state dir."""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry, start_http_server

from bwvisu_cli.access import ensure_credentials, write_nats_config
from bwvisu_cli.cluster import (
    etcd_auth_as_member,
    etcd_member,
    is_clustered,
    local_index_or_none,
    nats_member,
)
from bwvisu_cli.etcd_auth import set_up_etcd_auth
from bwvisu_cli.figures import Restarts, metrics_urls
from bwvisu_cli.servers import etcd_command, free_port, listening, nats_command
from bwvisu_cli.supervisor import Child, supervise
from bwvisu_cli.tls import ensure_demo_certificates
from bwvisu_common.errors import BwvisuError
from bwvisu_common.nearby import is_local
from bwvisu_common.secret_files import ensure_secret_file
from bwvisu_common.settings import Settings, host_port

log = logging.getLogger(__name__)

# Services in start order: (name, package, settings section that says where it listens).
SERVICES = [
    ("scheduler-adapter", "scheduler_adapter", None),
    ("keyhole-api", "keyhole_api", "keyhole_api"),
    ("runner-api", "runner_api", "runner_api"),
    ("web", "web_portal", "web"),
]


class AlreadyUp(BwvisuError):
    pass


def status_file(settings: Settings) -> Path:
    return Path(settings.state_dir) / "up.json"


def _lock(state_dir: Path) -> IO[str]:
    """Hold an exclusive lock for as long as this `bwvisu up` runs; a second one is refused."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "up.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise AlreadyUp(
            f"bwvisu is already up with state dir {state_dir} (pid {pid}); "
            "`bwvisu status` shows what runs, Ctrl-C in its terminal stops it"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def is_up(settings: Settings) -> bool:
    """True while some `bwvisu up` holds the state dir's lock."""
    lock = Path(settings.state_dir) / "up.lock"
    if not lock.exists():
        return False
    with lock.open() as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def plan(settings: Settings, config_path: str) -> list[Child]:
    state = Path(settings.state_dir)
    logs = state / "logs"
    nats_host, nats_port = host_port(settings.nats_servers[0], 4222, "nats-servers[0]")
    etcd_host, etcd_port = host_port(settings.etcd_servers[0], 2379, "etcd-servers[0]")
    py = sys.executable
    nats_config = state / "nats.conf"
    tls = Path(settings.credentials.dir) / "tls" if settings.credentials.ca_file else None

    async def etcd_users() -> None:
        if is_clustered(settings):
            await etcd_auth_as_member(settings, etcd_host, etcd_port, local_index_or_none(settings) == 0)
        else:
            await set_up_etcd_auth(settings, etcd_host, etcd_port)

    nats_argv = nats_command(nats_host, nats_port, state / "nats", nats_config)
    etcd_argv = etcd_command(etcd_host, etcd_port, free_port(), state / "etcd", tls)
    if is_clustered(settings):  # this machine's member of the NATS and etcd clusters
        nats_argv, (nats_host, nats_port) = nats_member(settings, state / "nats", nats_config)
        etcd_argv, (etcd_host, etcd_port) = etcd_member(settings, state / "etcd", tls)
    for what, host, port in (("NATS", nats_host, nats_port), ("etcd", etcd_host, etcd_port)):
        if listening(host, port):
            raise BwvisuError(f"something already listens on {host}:{port}, where {what} should start")
    children = [
        Child("nats-server", nats_argv, logs / "nats.log", (nats_host, nats_port)),
        Child("etcd", etcd_argv, logs / "etcd.log", (etcd_host, etcd_port), after_start=etcd_users),
        Child("projector", [py, "-m", "bwvisu_cli", "project", "--config", config_path],
              logs / "projector.log"),
    ]
    for name, package, section in SERVICES:
        if not _runnable(package):
            continue
        listen = None
        if section is not None and hasattr(settings, section):
            conf = getattr(settings, section)
            listen = (conf.host, conf.port)
        argv = [py, "-m", package, "--config", config_path]
        children.append(Child(name, argv, logs / f"{name}.log", listen))
    children += _gateway_agents(settings, config_path, logs)
    urls = metrics_urls(settings)
    for child in children:
        child.metrics = urls.get(child.name, "")
    return children


def _gateway_agents(settings: Settings, config_path: str, logs: Path) -> list[Child]:
    """One agent per gateway with a netns (run inside it); a gateway without one runs its own."""
    if not _runnable("gateway_agent"):
        return []
    if is_clustered(settings) and local_index_or_none(settings) != 0:
        return []  # on several middleware nodes, the first one's `up` starts the netns agents
    agents = []
    for gw in settings.gateway_nodes:
        agent = [sys.executable, "-m", "gateway_agent", "--config", config_path, "--gateway", gw.label]
        if gw.netns:
            argv = ["ip", "netns", "exec", gw.netns, *agent]
        elif is_local(gw.internal_ip):
            argv = agent
        else:
            continue  # another host's agent: started there (systemd)
        agents.append(Child(f"gateway-agent-{gw.label}", argv, logs / f"gateway-agent-{gw.label}.log"))
    return agents


def _runnable(package: str) -> bool:
    """A service exists once its package has a __main__; later ones join `up` by themselves."""
    return importlib.util.find_spec(package) is not None and (
        importlib.util.find_spec(f"{package}.__main__") is not None
    )


def run_up(settings: Settings, config_path: str) -> None:
    state = Path(settings.state_dir)
    lock = _lock(state)
    try:
        made = ensure_credentials(settings)
        if made:
            print(f"created credentials for {', '.join(made)} in {settings.credentials.dir}")
        _demo_certificates(settings)
        write_nats_config(settings, state / "nats.conf")
        children = plan(settings, config_path)
        password_file = Path(settings.runner_api.password_file)
        if ensure_secret_file(password_file):
            print(f"created the runner-api password for {settings.runner_api.user} in {password_file}")

        since = time.strftime("%Y-%m-%dT%H:%M:%S%z")

        def started(running: list[Child]) -> None:
            _write_status(settings, running, since)
            print(f"bwvisu is up (state dir {state}); Ctrl-C stops everything.")
            for c in running:
                print(f"  {c.name:<18} pid {c.pid:<8} {c.address:<22} log {c.log_file}")
            sys.stdout.flush()

        stop_metrics = _serve_metrics(settings, children)
        try:
            asyncio.run(supervise(children, started, lambda running: _write_status(settings, running, since)))
        finally:
            stop_metrics()
        print("bwvisu stopped.")
    finally:
        status_file(settings).unlink(missing_ok=True)
        lock.close()


def _serve_metrics(settings: Settings, children: list[Child]) -> Callable[[], None]:
    """`bwvisu up`'s own /metrics (its children's restarts), in a thread; returns how to stop it."""
    if not settings.metrics.up_port:
        return lambda: None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Restarts(children))
    try:
        server, _ = start_http_server(settings.metrics.up_port, settings.metrics.host, registry)
    except OSError as exc:  # metrics are no reason not to start
        log.error("cannot serve metrics on %s:%d: %s", settings.metrics.host, settings.metrics.up_port, exc)
        return lambda: None
    return server.shutdown


def _demo_certificates(settings: Settings) -> None:
    """The demo's CA and server certificate, unless TLS is off or the site names its own CA."""
    tls_dir = Path(settings.credentials.dir) / "tls"
    if settings.credentials.ca_file != str(tls_dir / "ca.crt"):
        return
    hosts = [host_port(a, 4222)[0] for a in settings.nats_servers]
    hosts += [host_port(a, 2379)[0] for a in settings.etcd_servers]
    if ensure_demo_certificates(tls_dir, hosts):
        print(f"created demo TLS certificates for {', '.join(sorted(set(hosts)))} in {tls_dir}")


def _write_status(settings: Settings, running: list[Child], since: str) -> None:
    """Rewritten on every start and exit of a child; replaced whole, so a reader never sees half."""
    data = {"pid": os.getpid(), "started": since, "processes": [c.as_dict() for c in running],
            "metrics": metrics_urls(settings)["bwvisu up"]}
    target = status_file(settings)
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    # Log tails may say more than the world should read: owner and group only.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data, indent=2))
    os.replace(temporary, target)

