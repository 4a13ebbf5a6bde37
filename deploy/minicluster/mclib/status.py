"""What of the minicluster exists right now: for `status`, for `up` and for `down`'s check."""
from __future__ import annotations

import json
from typing import Any

from . import accounts, firewall, network, slurm, sshd
from .shell import pids_matching, run
from .topology import (
    BRIDGE,
    BWVISU_CONFIG,
    MAX_COMPUTE,
    SERVICE_USER,
    SLURM_CONF,
    SSH_DIR,
    STATE,
    SUDOERS,
    SUDOERS_EXTEND,
    SYSTEM_SLURM_CONF,
    USERS,
    Host,
)
from .topology import hosts as make_hosts


def _host_report(host: Host) -> dict[str, Any]:
    present = network.host_is_up(host)
    daemons: dict[str, bool] = {}
    if host.role == "login":
        daemons["sshd"] = present and sshd.running(host) and sshd.listening(host)
    elif host.role == "compute":
        daemons["slurmd"] = present and slurm.slurmd_running(host)
    elif host.role == "middleware":
        pass  # its daemons are bwvisu's own (`make demo-ha`), reported by `bwvisu status`
    elif present:
        out = run(["ip", "netns", "exec", host.name, "sysctl", "-n", "net.ipv4.ip_forward"],
                  check=False).stdout.strip()
        daemons["ip_forward"] = out == "1"
    else:
        daemons["ip_forward"] = False
    return {"name": host.name, "ip": host.ip, "role": host.role, "present": present,
            "daemons": daemons}


def our_daemon_pids() -> list[int]:
    """slurmctld/slurmd run with our slurm.conf, sshd with our sshd_config: exact paths."""
    return sorted(set(pids_matching(f"{SLURM_CONF}") + pids_matching(f"{SSH_DIR}/sshd_config.")))


def leftovers() -> list[str]:
    """Everything of ours that exists, whatever the recorded topology says."""
    left = [f"netns {n}" for n in network.our_namespaces([])]
    left += [f"veth {v}" for v in network.leftover_veths()]
    if network.link_exists(BRIDGE):
        left.append(f"bridge {BRIDGE}")
    if network.forward_rule_present():
        left.append("host iptables FORWARD rule")
    if firewall.chain_present():
        left.append(f"host iptables chain {firewall.CHAIN}")
    if network.hosts_block_present():
        left.append("/etc/hosts block")
    for sudoers in (SUDOERS, SUDOERS_EXTEND):
        if sudoers.exists():
            left.append(str(sudoers))
    if SYSTEM_SLURM_CONF.is_symlink():
        left.append(f"{SYSTEM_SLURM_CONF} link")
    pids = our_daemon_pids()
    if slurm.munged_ours() is not None:
        pids.append(slurm.munged_ours() or 0)
    left += [f"process {p}" for p in pids]
    left += [f"user {u}" for u in accounts.users_present()]
    if STATE.exists():
        left.append(f"state dir {STATE}")
    return left


def collect(hosts: list[Host]) -> dict[str, Any]:
    host_reports = [_host_report(h) for h in hosts]
    ctld = slurm.ctld_running()
    states = slurm.node_states() if ctld else {}
    compute = [h.name for h in hosts if h.role == "compute"]
    side = {
        "bridge": network.link_exists(BRIDGE),
        "forward-rule": network.forward_rule_present(),
        "hosts-block": network.hosts_block_present(),
        "sudoers": SUDOERS.exists(),
        "munge": slurm.munge_works(),
        "slurmctld": ctld,
        # alice, bob and the service account; `up` adds the admin to a cluster made without one.
        "users": {*USERS, SERVICE_USER} <= set(accounts.users_present()),
        "config": BWVISU_CONFIG.exists(),
        "nodes-idle": bool(compute) and all(
            states.get(n, "").rstrip("*") in ("idle", "mixed", "allocated")
            and not states.get(n, "").endswith("*") for n in compute),
    }
    stray = [n for n in network.our_namespaces([]) if n not in {h.name for h in hosts}]
    up = (all(r["present"] and all(r["daemons"].values()) for r in host_reports)
          and all(side.values()) and not stray)
    return {"up": up, "hosts": host_reports, "host-side": side, "node-states": states,
            "sinfo": slurm.sinfo_text() if ctld else "", "leftovers": leftovers(),
            "config": str(BWVISU_CONFIG)}


def print_status(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"minicluster: {'UP' if report['up'] else 'NOT (fully) UP'}")
    print(f"{'host':8} {'address':13} {'netns':6} daemons")
    for r in report["hosts"]:
        daemons = " ".join(f"{k}={'yes' if v else 'NO'}" for k, v in r["daemons"].items())
        print(f"{r['name']:8} {r['ip']:13} {'yes' if r['present'] else 'NO':6} {daemons}")
    side = " ".join(f"{k}={'yes' if v else 'NO'}" for k, v in report["host-side"].items())
    print(f"host side: {side}")
    if report["sinfo"]:
        print(report["sinfo"])
    if report["up"]:
        print(f"bwvisu config: {report['config']}")
    elif report["leftovers"]:
        print("present: " + "; ".join(report["leftovers"]))
    else:
        print("nothing of the minicluster is left on this machine")


__all__ = ["collect", "print_status", "leftovers", "MAX_COMPUTE", "make_hosts"]
