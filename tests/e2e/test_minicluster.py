"""The minicluster is a real cluster: SSH, sudo, Slurm jobs as users, gateway DNAT, teardown."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import subprocess
import time
import uuid
from pathlib import Path

import asyncssh
import pytest

from .conftest import MINICLUSTER, Minicluster, other_sessions, run_minicluster

pytestmark = pytest.mark.e2e


def submit(mc: Minicluster, login: str, user: str, script: str, *args: str) -> str:
    proc = mc.ssh(login, ["sudo", "-n", "-u", user, "sbatch", "--parsable", *args], input=script)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def job_state(mc: Minicluster, job_id: str) -> str:
    proc = mc.ssh("login0", ["sudo", "-n", "-u", "alice", "squeue", "-h", "-j", job_id,
                             "-o", "%T %N"])
    return proc.stdout.strip()


def wait_until(what: str, probe, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _comm(pid: str) -> str:
    """The command name of a live (not zombie) process, else ""."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    name, rest = stat.split("(", 1)[1].rsplit(")", 1)
    return "" if rest.split()[0] == "Z" else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sbatch_over_ssh_runs_as_user_in_home(minicluster: Minicluster) -> None:
    mc = minicluster
    marker = f"job-{uuid.uuid4().hex[:8]}.txt"
    script = f'#!/bin/bash\necho "$(id -un) $(hostname) $PWD" > {marker}\n'
    async with asyncssh.connect(mc.hosts["login0"], username=mc.service_user,
                                client_keys=[str(mc.key_file)],
                                known_hosts=str(mc.known_hosts)) as conn:
        result = await conn.run("sudo -n -u alice sbatch --parsable", input=script, check=True)
    assert str(result.stdout).strip().isdigit()
    out = mc.home("alice") / marker
    for _ in range(300):
        if out.exists() and out.read_text().strip():
            break
        await asyncio.sleep(0.1)
    user, host, cwd = out.read_text().split()
    assert user == "alice"
    assert host in mc.compute_nodes
    assert cwd == str(mc.home("alice"))
    assert out.stat().st_uid == pwd.getpwnam("alice").pw_uid


def test_squeue_sees_running_job_and_scancel_ends_it(minicluster: Minicluster) -> None:
    mc = minicluster
    job = submit(mc, "login0", "bob", "#!/bin/bash\nsleep 300\n")
    state = wait_until("job running", lambda: job_state(mc, job).startswith("RUNNING") and
                       job_state(mc, job))
    assert state.split()[1] in mc.compute_nodes
    listing = mc.ssh("login1", ["sudo", "-n", "-u", "bob", "squeue", "-h", "-u", "bob",
                                "-o", "%i %u %T"])
    assert f"{job} bob RUNNING" in listing.stdout
    cancel = mc.ssh("login0", ["sudo", "-n", "-u", "bob", "scancel", job])
    assert cancel.returncode == 0, cancel.stderr
    wait_until("job gone from squeue", lambda: not job_state(mc, job).startswith("RUNNING"))
    wait_until("cancel recorded", lambda: f"JobId={job} " in mc.jobcomp_log.read_text()
               and "JobState=CANCELLED" in next(
                   line for line in mc.jobcomp_log.read_text().splitlines()
                   if line.startswith(f"JobId={job} ")))


def test_gateway_dnat_reaches_port_opened_by_job(minicluster: Minicluster) -> None:
    mc = minicluster
    node, gw = "cn0", "gw0"
    port, ext = free_port(), free_port()
    server = (
        "import socket\n"
        f"s = socket.create_server(({mc.hosts[node]!r}, {port}))\n"
        "while True:\n"
        "    c, peer = s.accept()\n"
        "    c.sendall(f'hello from {socket.gethostname()} to {peer[0]}\\n'.encode())\n"
        "    c.close()\n"
    )
    script = f"#!/bin/bash\nexec python3 - <<'PY'\n{server}PY\n"
    job = submit(mc, "login0", "alice", script, f"--nodelist={node}")
    dnat = ["PREROUTING", "-p", "tcp", "--dport", str(ext), "-j", "DNAT",
            "--to-destination", f"{mc.hosts[node]}:{port}"]
    masq = ["POSTROUTING", "-p", "tcp", "-d", mc.hosts[node], "--dport", str(port),
            "-j", "MASQUERADE"]
    try:
        mc.wait_port(mc.hosts[node], port, timeout=30)
        for rule in (dnat, masq):
            added = mc.in_host(gw, ["iptables", "-w", "-t", "nat", "-A", *rule])
            assert added.returncode == 0, added.stderr
        with socket.create_connection((mc.hosts[gw], ext), timeout=5) as conn:
            reply = conn.makefile().readline().strip()
        assert reply == f"hello from {node} to {mc.hosts[gw]}"
    finally:
        for rule in (dnat, masq):
            mc.in_host(gw, ["iptables", "-w", "-t", "nat", "-D", *rule])
        mc.ssh("login0", ["sudo", "-n", "-u", "alice", "scancel", job])
    left = mc.in_host(gw, ["iptables", "-w", "-t", "nat", "-S"]).stdout
    assert str(ext) not in left


def test_sudo_refuses_root_and_unknown_users(minicluster: Minicluster) -> None:
    mc = minicluster
    as_root = mc.ssh("login0", ["sudo", "-n", "-u", "root", "sbatch", "--parsable"],
                     input="#!/bin/bash\ntouch /root/pwned\n")
    assert as_root.returncode != 0
    assert "password is required" in as_root.stderr
    other = mc.ssh("login0", ["sudo", "-n", "-u", "alice", "cat", "/etc/shadow"])
    assert other.returncode != 0
    missing = mc.ssh("login0", ["sudo", "-n", "-u", mc.missing_user, "id"])
    assert missing.returncode != 0
    assert "unknown user" in missing.stderr
    # Only members of the users' group: no system account, not the service account itself.
    for account in ("munge", "daemon", "bwvisu"):
        system = mc.ssh("login0", ["sudo", "-n", "-u", account, "squeue", "--version"])
        assert system.returncode != 0, account
        assert "password is required" in system.stderr or "not allowed" in system.stderr, account
    assert mc.ssh("login0", ["sudo", "-n", "-u", "bob", "squeue", "--version"]).returncode == 0


def test_login1_serves_while_login0_sshd_is_down(minicluster: Minicluster) -> None:
    mc = minicluster
    mc.stop_sshd("login0")
    try:
        wait_until("login0 refusing", lambda: mc.ssh("login0", ["true"], timeout=10)
                   .returncode != 0)
        proc = mc.ssh("login1", ["sudo", "-n", "-u", "alice", "id", "-un"])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "alice"
        job = submit(mc, "login1", "alice", "#!/bin/bash\ntrue\n")
        assert job.isdigit()
    finally:
        mc.repair()
    assert mc.ssh("login0", ["hostname"]).stdout.strip() == "login0"


def test_config_loads_with_bwvisu_settings(minicluster: Minicluster) -> None:
    settings_mod = pytest.importorskip("bwvisu_common.settings")
    settings = settings_mod.load_settings(minicluster.config_path)
    assert [n.ip for n in settings.command_nodes] == [
        minicluster.hosts[n] for n in minicluster.login_nodes]
    assert settings.bwvisu_home_prefix == str(minicluster.home_prefix)
    assert Path(settings.ssh.key_file) == minicluster.key_file


def test_not_root_is_one_clear_error() -> None:
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    proc = subprocess.run([*as_nobody, str(MINICLUSTER), "status"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "root" in proc.stderr


# Keep this test last in the file: it tears the cluster down and builds it again.
@pytest.mark.cluster_teardown
def test_down_leaves_nothing_then_up_restores(minicluster: Minicluster) -> None:
    if other_sessions():
        pytest.skip("another test session on this machine is using the minicluster")
    down = run_minicluster("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    code, report = minicluster.status()
    assert code == 3, report
    assert report["leftovers"] == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not {line.split()[0] for line in netns.splitlines()} & set(minicluster.hosts)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "bwvbr0" not in links and "bwv-" not in links
    assert "bwvisu-minicluster" not in Path("/etc/hosts").read_text()
    names = {_comm(p) for p in os.listdir("/proc") if p.isdigit()}
    assert not names & {"slurmctld", "slurmd", "slurmstepd"}
    assert not minicluster.state_dir.exists()
    minicluster.repair()
    assert minicluster.status()[0] == 0
