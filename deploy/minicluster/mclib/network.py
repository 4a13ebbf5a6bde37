"""Bridge, namespaces, veths, host firewall and the /etc/hosts block."""
from __future__ import annotations

import os
from pathlib import Path

from .shell import MiniclusterError, ok, run
from .topology import (
    BRIDGE,
    ETC_HOSTS,
    FORWARD_COMMENT,
    HOST_IP,
    HOSTS_BEGIN,
    HOSTS_END,
    NET_PREFIX,
    PREFIX_LEN,
    Host,
    candidate_names,
)

FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE,
                "-m", "comment", "--comment", FORWARD_COMMENT, "-j", "ACCEPT"]


def netns_names() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except OSError:
        return set()


def link_exists(name: str, ns: str | None = None) -> bool:
    prefix = ["ip", "-n", ns] if ns else ["ip"]
    return ok([*prefix, "link", "show", "dev", name])


def ensure_bridge() -> None:
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge", "forward_delay", "0"])
    run(["ip", "addr", "replace", f"{HOST_IP}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def ensure_host(host: Host) -> None:
    if host.name not in netns_names():
        run(["ip", "netns", "add", host.name])
    if not link_exists(host.veth):
        if link_exists("eth0", host.name):
            run(["ip", "-n", host.name, "link", "del", "eth0"])
        run(["ip", "link", "add", host.veth, "type", "veth",
             "peer", "name", "eth0", "netns", host.name])
    run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
    ns = ["ip", "-n", host.name]
    run([*ns, "link", "set", "lo", "up"])
    run([*ns, "addr", "replace", f"{host.ip}/{PREFIX_LEN}", "dev", "eth0"])
    run([*ns, "link", "set", "eth0", "up"])
    run([*ns, "route", "replace", "default", "via", HOST_IP])
    if host.role == "gateway":
        run(["ip", "netns", "exec", host.name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])


def host_is_up(host: Host) -> bool:
    if host.name not in netns_names():
        return False
    out = run(["ip", "-n", host.name, "-4", "-o", "addr", "show", "dev", "eth0"], check=False)
    return f" {host.ip}/" in out.stdout and link_exists(host.veth)


def is_ours(ns: str) -> bool:
    """A namespace is the minicluster's if it carries one of our bridge addresses."""
    out = run(["ip", "-n", ns, "-4", "-o", "addr", "show"], check=False).stdout
    return f" {NET_PREFIX}" in out


def our_namespaces(recorded: list[str]) -> list[str]:
    present = netns_names()
    return [n for n in candidate_names() if n in present and (n in recorded or is_ours(n))]


def remove_namespace(ns: str) -> None:
    run(["ip", "netns", "del", ns], check=False)
    veth = f"bwv-{ns}"
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)


def leftover_veths() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith("bwv-")]


def remove_bridge() -> None:
    for veth in leftover_veths():
        run(["ip", "link", "del", veth], check=False)
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE])


def _iptables() -> list[str] | None:
    for path in ("/usr/sbin/iptables", "/sbin/iptables"):
        if Path(path).exists():
            return [path, "-w"]
    return None


def iptables() -> list[str]:
    ipt = _iptables()
    if ipt is None:
        raise MiniclusterError("iptables is not installed")
    return ipt


def forward_rule_present() -> bool:
    ipt = _iptables()
    return bool(ipt) and ok([*ipt, "-C", *FORWARD_RULE])


def ensure_forward_rule() -> None:
    """Bridged traffic passes the host's FORWARD chain when br_netfilter is loaded."""
    ipt = _iptables()
    if ipt is None:
        raise MiniclusterError("iptables is not installed")
    if not forward_rule_present():
        run([*ipt, "-I", *FORWARD_RULE])


def remove_forward_rule() -> None:
    ipt = _iptables()
    while ipt and forward_rule_present():
        run([*ipt, "-D", *FORWARD_RULE])


def _strip_block(text: str) -> str:
    lines, out, inside = text.splitlines(keepends=True), [], False
    for line in lines:
        if line.strip() == HOSTS_BEGIN:
            inside = True
        elif line.strip() == HOSTS_END:
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def hosts_block_present() -> bool:
    return HOSTS_BEGIN in ETC_HOSTS.read_text()


def ensure_hosts_block(hosts: list[Host]) -> None:
    current = ETC_HOSTS.read_text()
    base = _strip_block(current)
    if base and not base.endswith("\n"):
        base += "\n"
    block = [HOSTS_BEGIN] + [f"{h.ip}\t{h.name}" for h in hosts] + [HOSTS_END]
    wanted = base + "\n".join(block) + "\n"
    if wanted != current:
        # written in place: /etc/hosts may be a bind mount that cannot be replaced
        ETC_HOSTS.write_text(wanted)


def remove_hosts_block() -> None:
    current = ETC_HOSTS.read_text()
    stripped = _strip_block(current)
    if stripped != current:
        ETC_HOSTS.write_text(stripped)
