"""munge, slurmctld on the host side and one slurmd per compute namespace."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from .shell import (
    MiniclusterError,
    alive,
    ok,
    on_host,
    read_pid,
    run,
    say,
    spawn,
    terminate,
    wait_for,
    write_file,
)
from .topology import (
    CGROUP_CONF,
    HOST_IP,
    LOG,
    NODE_CPUS,
    PARTITION,
    RUN,
    SLURM_CONF,
    SLURM_STATE,
    SYSTEM_SLURM_CONF,
    Host,
)

MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = RUN / "munged.pid"
CTLD_PID = RUN / "slurmctld.pid"

CGROUP_TEXT = """\
# Written by deploy/minicluster. The cgroup v2 root is not mounted on these machines.
CgroupPlugin=cgroup/v1
CgroupAutomount=no
"""


def slurm_conf(compute: list[Host]) -> str:
    names = ",".join(h.name for h in compute)
    nodes = "\n".join(f"NodeName={h.name} NodeAddr={h.ip} NodeHostname={h.name} "
                      f"CPUs={NODE_CPUS} State=UNKNOWN" for h in compute)
    return f"""\
# Written by deploy/minicluster; removed by `minicluster down`.
ClusterName=bwvisu-minicluster
SlurmctldHost={socket.gethostname()}({HOST_IP})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={SLURM_STATE}/ctld
SlurmdSpoolDir={SLURM_STATE}/d/%n
SlurmctldPidFile={RUN}/slurmctld.slurm.pid
SlurmdPidFile={RUN}/slurmd-%n.slurm.pid
SlurmctldLogFile={LOG}/slurmctld.log
SlurmdLogFile={LOG}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=5
KillWait=2
InactiveLimit=0
Waittime=0
MinJobAge=300
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1,batch_sched_delay=0,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# No slurmdbd: sacct has no data. Finished jobs are appended to a text file instead.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={LOG}/jobcomp.log
{nodes}
PartitionName={PARTITION} Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""


def write_configs(compute: list[Host]) -> bool:
    """Write slurm.conf/cgroup.conf; True if slurm.conf changed."""
    for sub in ("ctld", "d"):
        (SLURM_STATE / sub).mkdir(parents=True, exist_ok=True)
    changed = write_file(SLURM_CONF, slurm_conf(compute))
    write_file(CGROUP_CONF, CGROUP_TEXT)
    link_system_conf()
    return changed


def link_system_conf() -> None:
    """Client commands (sbatch under sudo, sinfo) read /etc/slurm/slurm.conf."""
    SYSTEM_SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    if SYSTEM_SLURM_CONF.is_symlink() and os.readlink(SYSTEM_SLURM_CONF) == str(SLURM_CONF):
        return
    if SYSTEM_SLURM_CONF.exists() or SYSTEM_SLURM_CONF.is_symlink():
        foreign = SYSTEM_SLURM_CONF.is_symlink() or (
            "deploy/minicluster" not in SYSTEM_SLURM_CONF.read_text())
        if foreign:
            raise MiniclusterError(f"{SYSTEM_SLURM_CONF} exists and is not the minicluster's; "
                                   "move it away first")
        SYSTEM_SLURM_CONF.unlink()
    SYSTEM_SLURM_CONF.symlink_to(SLURM_CONF)


def unlink_system_conf() -> None:
    if SYSTEM_SLURM_CONF.is_symlink() and os.readlink(SYSTEM_SLURM_CONF) == str(SLURM_CONF):
        SYSTEM_SLURM_CONF.unlink()


def munge_works() -> bool:
    proc = subprocess.run(["munge", "-n"], capture_output=True)
    return proc.returncode == 0


def ensure_munge() -> None:
    if not MUNGE_KEY.exists():
        run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)])
    os.chown(MUNGE_KEY, *_ids("munge"))
    os.chmod(MUNGE_KEY, 0o400)
    if munge_works():
        return
    for d in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
        os.chown(d, *_ids("munge"))
    uid, gid = _ids("munge")
    spawn(["/usr/sbin/munged", "--foreground"], LOG / "munged.out", MUNGE_PID,
          user=uid, group=gid, extra_groups=[])
    wait_for("munged", munge_works, timeout=10)


def _ids(user: str) -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def ctld_running() -> bool:
    pid = read_pid(CTLD_PID)
    return pid is not None and alive(pid, str(SLURM_CONF))


def slurmd_pidfile(node: Host) -> Path:
    return RUN / f"slurmd-{node.name}.pid"


def slurmd_running(node: Host) -> bool:
    pid = read_pid(slurmd_pidfile(node))
    return pid is not None and alive(pid, str(SLURM_CONF))


def munged_ours() -> int | None:
    pid = read_pid(MUNGE_PID)
    return pid if pid is not None and alive(pid, "munged") else None


def ensure_daemons(compute: list[Host], restart: bool) -> None:
    if restart:
        stop_slurm(compute)
    if not ctld_running():
        say("starting slurmctld")
        spawn(["slurmctld", "-D", "-f", str(SLURM_CONF)], LOG / "slurmctld.out", CTLD_PID)
        wait_for("slurmctld", lambda: ok(["scontrol", "ping"]) and ctld_running(), timeout=20)
    for node in compute:
        if slurmd_running(node) and not slurmd_listening(node):
            # shutting down (or stuck): let it finish, then start a fresh one
            terminate([read_pid(slurmd_pidfile(node)) or 0], timeout=10)
        if not slurmd_running(node):
            say(f"starting slurmd on {node.name}")
            spawn(on_host(node.name, ["slurmd", "-D", "-N", node.name, "-f", str(SLURM_CONF)]),
                  LOG / f"slurmd-{node.name}.out", slurmd_pidfile(node))


def stop_slurm(compute: list[Host]) -> None:
    pids = [read_pid(slurmd_pidfile(n)) for n in compute] + [read_pid(CTLD_PID)]
    terminate([p for p in pids if p is not None and alive(p, str(SLURM_CONF))])


def node_states() -> dict[str, str]:
    proc = run(["sinfo", "-h", "-N", "-o", "%N %T"], check=False)
    if proc.returncode != 0:
        return {}
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.strip())


def slurmd_listening(node: Host) -> bool:
    try:
        with socket.create_connection((node.ip, 6818), timeout=0.5):
            return True
    except OSError:
        return False


def wait_idle(compute: list[Host], timeout: float = 40) -> None:
    for node in compute:
        wait_for(f"slurmd on {node.name}", lambda n=node: slurmd_listening(n), timeout=timeout)

    def ready() -> bool:
        states = node_states()
        for node in compute:
            state = states.get(node.name, "")
            if state.startswith(("drain", "down")) and slurmd_running(node):
                run(["scontrol", "update", f"nodename={node.name}", "state=resume"], check=False)
        return all(states.get(n.name, "").rstrip("*") in ("idle", "mixed", "allocated")
                   for n in compute)
    wait_for("compute nodes to become idle in sinfo", ready, timeout=timeout, interval=0.3)


def sinfo_text() -> str:
    proc = run(["sinfo", "-N", "-o", "%10N %10P %10T %5c"], check=False)
    return (proc.stdout or proc.stderr).rstrip()
