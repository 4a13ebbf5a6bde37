"""Files `up` writes for others: the bwvisu config and cluster.json for tests."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from .accounts import KEY_FILE
from .shell import write_file
from .sshd import KNOWN_HOSTS
from .topology import (
    ADMIN_GROUP,
    ADMIN_USER,
    BRIDGE,
    BWVISU_CONFIG,
    BWVISU_STATE,
    CLUSTER_JSON,
    HOME_PREFIX,
    HOST_IP,
    LOG,
    MISSING_USER,
    PARTITION,
    SECRETS,
    SERVICE_USER,
    SLURM_CONF,
    STATE,
    USERS,
    USERS_JSON,
    Host,
)

WEB_PASSWORD = SECRETS / "bwvisu-web.password"


def bwvisu_config(hosts: list[Host]) -> dict[str, object]:
    login = [h for h in hosts if h.role == "login"]
    gateways = [h for h in hosts if h.role == "gateway"]
    return {
        "bwvisu-home-prefix": str(HOME_PREFIX),
        "command-nodes": [{"name": h.name, "ip": h.ip, "user": SERVICE_USER, "port": 22}
                          for h in login],
        # The minicluster has no second network: a gateway's "external" address is its
        # bridge address, reachable from the host machine.
        # Each gateway's agent runs inside the gateway's netns (`netns`), so NATS and etcd
        # listen on the bridge address where the namespaces reach them; the agent's /metrics
        # listens on its bridge address, where the host (and a Prometheus there) reaches it.
        "gateway-nodes": [{"name": h.name, "internal-ip": h.ip, "external-ip": h.ip,
                           "user": SERVICE_USER, "port": 22, "netns": h.name, "metrics-host": h.ip}
                          for h in gateways],
        "keyholed-servers": [f"http://{HOST_IP}:4243"],
        "keyholed-port-range": {"min": 20000, "max": 20999},
        "keyholed-max-forwarders-per-job": 4,
        "etcd-servers": [f"{HOST_IP}:2379"],
        "nats-servers": [f"nats://{HOST_IP}:4222"],
        "forwarding-hostname-suffix": "",
        "debug": {"keyholed-static-forwarding": False},
        "state-dir": str(BWVISU_STATE),
        "ssh": {"key-file": str(KEY_FILE), "known-hosts": str(KNOWN_HOSTS)},
        "runner-api": {"host": "127.0.0.1", "port": 4242, "password-file": str(WEB_PASSWORD)},
        "keyhole-api": {"host": HOST_IP, "port": 4243},
        # Extend is on: the login nodes have the sudo rule for scontrol update (accounts.py).
        "scheduler": {"max-extension": 60},
    }


def ha_node_config(hosts: list[Host], node: Host) -> dict[str, object]:
    """One middleware node's config: its services listen on its own address, and everything that
    is clustered (NATS, etcd, keyhole-api, runner-api) lists all middleware nodes."""
    mws = [h for h in hosts if h.role == "middleware"]
    config = bwvisu_config(hosts)
    config.update({
        "keyholed-servers": [f"http://{h.ip}:4243" for h in mws],
        "etcd-servers": [f"{h.ip}:2379" for h in mws],
        "nats-servers": [f"nats://{h.ip}:4222" for h in mws],
        "stream-replicas": len(mws),
        "state-dir": str(BWVISU_STATE / node.name),
        # One set of passwords and one CA for the whole cluster: the first node's `up` makes them.
        "credentials": {"dir": str(BWVISU_STATE / "ha-credentials")},
        "runner-api": {"host": node.ip, "port": 4242, "password-file": str(WEB_PASSWORD)},
        "keyhole-api": {"host": node.ip, "port": 4243},
        "metrics": {"host": node.ip},  # the node's own address: reachable from the host
        "web": {"host": node.ip, "port": 8080,
                "runner-api-url": [f"http://{node.ip}:4242"]
                + [f"http://{h.ip}:4242" for h in mws if h != node]},
    })
    return config


def ha_config_path(node: Host) -> Path:
    return STATE / f"bwvisu-{node.name}.json"


def cluster_facts(hosts: list[Host]) -> dict[str, object]:
    return {
        "state-dir": str(STATE),
        "config": str(BWVISU_CONFIG),
        "bridge": BRIDGE,
        "host-ip": HOST_IP,
        "hosts": [{"name": h.name, "ip": h.ip, "role": h.role} for h in hosts],
        "ha-configs": {h.name: str(ha_config_path(h)) for h in hosts if h.role == "middleware"},
        "partition": PARTITION,
        "users": list(USERS),
        "admin-user": ADMIN_USER,  # a member of web.admin-group; password in passwords-file
        "admin-group": ADMIN_GROUP,
        "missing-user": MISSING_USER,
        "passwords-file": str(USERS_JSON),
        "home-prefix": str(HOME_PREFIX),
        "service-user": SERVICE_USER,
        "ssh": {"key-file": str(KEY_FILE), "known-hosts": str(KNOWN_HOSTS)},
        "web-password-file": str(WEB_PASSWORD),
        "slurm-conf": str(SLURM_CONF),
        "jobcomp-log": str(LOG / "jobcomp.log"),
        "log-dir": str(LOG),
    }


def write_all(hosts: list[Host]) -> None:
    SECRETS.mkdir(parents=True, exist_ok=True)
    SECRETS.chmod(0o700)
    BWVISU_STATE.mkdir(parents=True, exist_ok=True)
    if not WEB_PASSWORD.exists():
        write_file(WEB_PASSWORD, secrets.token_urlsafe(24) + "\n", 0o600)
    write_file(BWVISU_CONFIG, json.dumps(bwvisu_config(hosts), indent=2) + "\n", 0o644)
    for node in (h for h in hosts if h.role == "middleware"):
        write_file(ha_config_path(node), json.dumps(ha_node_config(hosts, node), indent=2) + "\n", 0o644)
    write_file(CLUSTER_JSON, json.dumps(cluster_facts(hosts), indent=2) + "\n", 0o644)


def recorded_hosts() -> list[Host] | None:
    try:
        data = json.loads(Path(CLUSTER_JSON).read_text())
        return [Host(h["name"], h["ip"], h["role"]) for h in data["hosts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
