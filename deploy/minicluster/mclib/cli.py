"""`minicluster up|down|status|shell HOST`: the command line."""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Iterator

from . import accounts, facts, firewall, network, packages, slurm, sshd
from .shell import MiniclusterError, on_host, require_root, run, say, terminate
from .status import collect, our_daemon_pids, print_status
from .topology import BWVISU_CONFIG, DEFAULT_COMPUTE, LOCK_FILE, MAX_COMPUTE, STATE, Host
from .topology import hosts as make_hosts


def up(n_compute: int | None, ha: bool = False) -> int:
    started = time.monotonic()
    packages.ensure()
    recorded = facts.recorded_hosts()
    if n_compute is None:
        n_compute = sum(h.role == "compute" for h in recorded) if recorded else DEFAULT_COMPUTE
    # Once built with --ha, the middleware nodes stay until `down`.
    ha = ha or any(h.role == "middleware" for h in recorded or [])
    hosts = make_hosts(n_compute, ha=ha)
    base = [h for h in hosts if h.role != "middleware"]
    if collect(base)["up"]:
        if ha:
            _ensure_middleware(hosts)
        # A cluster built by an older version gets the current sudo rule and the admin login
        # without a rebuild.
        accounts.ensure_users()
        accounts.ensure_sudoers()
        firewall.ensure_compute_firewall(hosts)  # a rule added since it came up
        say(f"already up; bwvisu config: {BWVISU_CONFIG}")
        return 0
    build(hosts)
    if ha:
        _ensure_middleware(hosts)
    say(f"up in {time.monotonic() - started:.1f}s; bwvisu config: {BWVISU_CONFIG}")
    return 0


def _ensure_middleware(hosts: list[Host]) -> None:
    """The namespaces mw0-mw2 on the bridge, closed to the compute nodes for NATS and etcd."""
    for host in hosts:
        if host.role == "middleware":
            network.ensure_host(host)
    firewall.ensure_middleware_firewall(hosts)
    network.ensure_hosts_block(hosts)
    facts.write_all(hosts)


def build(hosts: list[Host]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o755)
    wanted = {h.name for h in hosts}
    for stale in network.our_namespaces([]):
        if stale not in wanted:
            _stop_namespace(stale)
            network.remove_namespace(stale)
    network.ensure_bridge()
    network.ensure_forward_rule()
    for host in hosts:
        if host.role != "middleware":
            network.ensure_host(host)
    firewall.ensure_compute_firewall(hosts)
    network.ensure_hosts_block(hosts)
    accounts.ensure_users()
    accounts.ensure_service_account()
    accounts.ensure_sudoers()
    compute = [h for h in hosts if h.role == "compute"]
    login = [h for h in hosts if h.role == "login"]
    slurm.ensure_munge()
    changed = slurm.write_configs(compute)
    slurm.ensure_daemons(compute, restart=changed and slurm.ctld_running())
    sshd.ensure_keys(login)
    for host in login:
        sshd.ensure(host)
    facts.write_all(hosts)
    sshd.wait_listening(login)
    slurm.wait_idle(compute)


def _namespace_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _stop_namespace(ns: str) -> None:
    terminate(_namespace_pids(ns))


def down() -> int:
    recorded = [h.name for h in (facts.recorded_hosts() or make_hosts())]
    namespaces = network.our_namespaces(recorded)
    # slurmd, slurmstepd, job processes and sshd in the namespaces; slurmctld, munged outside.
    # Their state is deleted below, so they get a short grace period only.
    pids = [pid for ns in namespaces for pid in _namespace_pids(ns)] + our_daemon_pids()
    munged = slurm.munged_ours()
    terminate(pids + ([munged] if munged is not None else []), timeout=2.0)
    for ns in namespaces:
        network.remove_namespace(ns)
    network.remove_bridge()
    network.remove_forward_rule()
    firewall.remove_compute_firewall()
    network.remove_hosts_block()
    accounts.remove_sudoers()
    slurm.unlink_system_conf()
    accounts.remove_users()
    shutil.rmtree(STATE, ignore_errors=True)
    left = collect(make_hosts(MAX_COMPUTE, ha=True))["leftovers"]
    if left:
        say("down, but left: " + "; ".join(left))
        return 1
    say("down: nothing left")
    return 0


def status(as_json: bool) -> int:
    recorded = facts.recorded_hosts() or make_hosts()
    report = collect(recorded)
    print_status(report, as_json)
    if report["up"]:
        return 0
    return 3 if not report["leftovers"] else 1


def shell(host: str, command: list[str]) -> int:
    if host not in network.netns_names() or not network.is_ours(host):
        print(f"minicluster: no host {host!r} (is the minicluster up?)", file=sys.stderr)
        return 2
    argv = on_host(host, command or ["bash"])
    os.execvp(argv[0], argv)
    return 0  # not reached


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="minicluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="build or repair the cluster")
    p_up.add_argument("--ha", action="store_true",
                      help="also the middleware nodes mw0-mw2 (see `make demo-ha`)")
    p_up.add_argument("--compute", type=int, default=None, metavar="N",
                      help=f"number of compute nodes (1..{MAX_COMPUTE}, default {DEFAULT_COMPUTE})")
    sub.add_parser("down", help="remove everything the cluster made")
    sub.add_parser("packages", help="only install the Debian packages the cluster needs")
    p_status = sub.add_parser("status", help="show hosts, daemons and sinfo")
    p_status.add_argument("--json", action="store_true")
    p_shell = sub.add_parser("shell", help="a shell (or COMMAND) inside a host's namespace")
    p_shell.add_argument("host")
    p_shell.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.cmd == "up" and args.compute is not None and not 1 <= args.compute <= MAX_COMPUTE:
        parser.error(f"--compute must be between 1 and {MAX_COMPUTE}")
    if args.cmd == "shell" and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One `up` or `down` at a time on this machine."""
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv: list[str]) -> int:
    args = parse(argv)
    require_root()
    try:
        if args.cmd in ("up", "down"):
            with _exclusive():
                return up(args.compute, args.ha) if args.cmd == "up" else down()
        if args.cmd == "status":
            return status(args.json)
        if args.cmd == "packages":
            with _exclusive():
                packages.ensure()
            return 0
        return shell(args.host, args.command)
    except MiniclusterError as exc:
        print(f"minicluster: error: {exc}", file=sys.stderr)
        return 1
