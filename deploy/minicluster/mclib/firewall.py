"""The host's INPUT rule a site's firewall stands for: compute nodes cannot open NATS or etcd.

Every user runs code on the compute nodes, so nothing there may reach the middleware's state. The
rule is a chain of its own, jumped to for each compute node's address:

- replies to connections the host opened (slurmctld to slurmd, srun) pass;
- NATS (4222, routes 6222), etcd (2379, 2380) and the range isolated test systems draw their
  NATS and etcd ports from (bwvisu_cli.testbed.SERVER_PORTS) are rejected;
- the rest passes: slurmctld, and keyhole-api on 4243 or an isolated system's port.

A site's rule is stricter (deploy/README.md): it lets through slurmctld and keyhole-api only. The
minicluster rejects by port instead because test systems of several checkouts share it.
"""
from __future__ import annotations

from .network import iptables
from .shell import ok, run
from .topology import Host

CHAIN = "BWVISU-COMPUTE-IN"
# Keep in step with bwvisu_cli.testbed.SERVER_PORTS (this module runs without bwvisu installed).
SERVER_PORTS = "14000:14999"
REJECTED = ["4222", "6222", "2379", "2380", SERVER_PORTS]  # 6222: NATS cluster routes
RULES = [
    ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
    *[["-p", "tcp", "--dport", port, "-j", "REJECT", "--reject-with", "tcp-reset"] for port in REJECTED],
    ["-j", "RETURN"],
]


def _jump(host: Host) -> list[str]:
    return ["INPUT", "-s", host.ip, "-j", CHAIN]


def ensure_compute_firewall(hosts: list[Host]) -> None:
    """Idempotent: the chain is rewritten, each compute node jumps to it once."""
    _ensure_chain(iptables(), hosts)


def ensure_middleware_firewall(hosts: list[Host]) -> None:
    """Inside each middleware node (the bridge does not pass its traffic through the host's INPUT):
    the same chain, jumped to for each compute node's address. keyhole-api stays reachable."""
    for mw in (h for h in hosts if h.role == "middleware"):
        _ensure_chain(["ip", "netns", "exec", mw.name, *iptables()], hosts)


def _ensure_chain(ipt: list[str], hosts: list[Host]) -> None:
    """Through `ipt` (the host's iptables or a namespace's): the chain rewritten, one jump per
    compute node."""
    if not ok([*ipt, "-n", "-L", CHAIN]):
        run([*ipt, "-N", CHAIN])
    run([*ipt, "-F", CHAIN])
    for rule in RULES:
        run([*ipt, "-A", CHAIN, *rule])
    for host in hosts:
        if host.role == "compute" and not ok([*ipt, "-C", *_jump(host)]):
            run([*ipt, "-I", *_jump(host)])


def compute_firewall_present(hosts: list[Host]) -> bool:
    ipt = iptables()
    return all(ok([*ipt, "-C", *_jump(h)]) for h in hosts if h.role == "compute")


def chain_present() -> bool:
    return ok([*iptables(), "-n", "-L", CHAIN])


def remove_compute_firewall() -> None:
    """Every jump to the chain (any address), then the chain."""
    ipt = iptables()
    listing = run([*ipt, "-S", "INPUT"], check=False).stdout
    for line in listing.splitlines():
        parts = line.split()
        if parts[:1] == ["-A"] and parts[-2:] == ["-j", CHAIN]:
            run([*ipt, "-D", *parts[1:]], check=False)
    if ok([*ipt, "-n", "-L", CHAIN]):
        run([*ipt, "-F", CHAIN])
        run([*ipt, "-X", CHAIN])
