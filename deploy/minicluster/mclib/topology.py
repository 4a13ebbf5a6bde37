"""Names, addresses and paths of the minicluster: the one place they are fixed."""
from __future__ import annotations

import dataclasses
from pathlib import Path

STATE = Path("/var/lib/bwvisu-minicluster")
ETC = STATE / "etc"
RUN = STATE / "run"
LOG = STATE / "log"
SSH_DIR = STATE / "ssh"
SECRETS = STATE / "secrets"
HOME_PREFIX = STATE / "home"
SERVICE_HOME = STATE / "service" / "bwvisu"
SLURM_STATE = STATE / "slurm"
BWVISU_STATE = STATE / "bwvisu-state"
CLUSTER_JSON = STATE / "cluster.json"
USERS_JSON = STATE / "users.json"
BWVISU_CONFIG = STATE / "bwvisu.json"
SLURM_CONF = ETC / "slurm.conf"
CGROUP_CONF = ETC / "cgroup.conf"
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")
SUDOERS = Path("/etc/sudoers.d/bwvisu-minicluster")
SUDOERS_EXTEND = Path("/etc/sudoers.d/bwvisu-minicluster-extend")  # scontrol update TimeLimit
ETC_HOSTS = Path("/etc/hosts")
LOCK_FILE = Path("/run/bwvisu-minicluster.lock")
HOSTS_BEGIN = "# BEGIN bwvisu-minicluster"
HOSTS_END = "# END bwvisu-minicluster"

BRIDGE = "bwvbr0"
NET_PREFIX = "10.200.0."
HOST_IP = NET_PREFIX + "1"
PREFIX_LEN = 24
FORWARD_COMMENT = "bwvisu-minicluster"

USERS = ("alice", "bob")
# The demo's admin: a portal login in web.admin-group (its default), not a cluster user (no job
# runs as it). Its password is in users.json beside alice's and bob's.
ADMIN_USER = "admin"
ADMIN_GROUP = "bwvisu-admin"
MISSING_USER = "mallory"
SERVICE_USER = "bwvisu"
# The cluster's users are its members; the service account may sudo only to them.
USERS_GROUP = "bwvisu-users"
PARTITION = "debug"
NODE_CPUS = 8  # advertised per compute node (SlurmdParameters=config_overrides)
MAX_COMPUTE = 10
DEFAULT_COMPUTE = 2
MIDDLEWARE_NODES = 3  # a NATS and an etcd cluster keep a majority with one node lost

PACKAGES = (
    "slurm-wlm", "munge", "openssh-server", "openssh-client", "iptables",
    "netcat-openbsd", "sudo", "xpra", "xvfb", "xterm", "iproute2", "procps", "python3",
    # The applications the shipped templates start on compute nodes (xpra's server needs
    # PIL to answer its HTML5 client).
    "jupyter-notebook", "python3-pil",
    # A real Prometheus server scrapes the services' /metrics in tests/integration/test_metrics.py.
    "prometheus",
)


@dataclasses.dataclass(frozen=True)
class Host:
    """One namespace "host" on the bridge."""

    name: str
    ip: str
    role: str  # "login", "compute", "gateway" or "middleware"

    @property
    def veth(self) -> str:
        return f"bwv-{self.name}"


def hosts(n_compute: int = DEFAULT_COMPUTE, ha: bool = False) -> list[Host]:
    result = [Host(f"login{i}", f"{NET_PREFIX}{10 + i}", "login") for i in range(2)]
    result += [Host(f"cn{i}", f"{NET_PREFIX}{20 + i}", "compute") for i in range(n_compute)]
    result += [Host(f"gw{i}", f"{NET_PREFIX}{30 + i}", "gateway") for i in range(2)]
    if ha:
        result += middleware_hosts()
    return result


def middleware_hosts() -> list[Host]:
    """The HA middleware (`up --ha`): each runs a NATS server, an etcd member and every service."""
    return [Host(f"mw{i}", f"{NET_PREFIX}{40 + i}", "middleware") for i in range(MIDDLEWARE_NODES)]


def candidate_names() -> list[str]:
    """Every netns name the minicluster could ever have made."""
    return [h.name for h in hosts(MAX_COMPUTE, ha=True)]
