"""One sshd per command node, each with its own host key, and the known_hosts file."""
from __future__ import annotations

import socket
from pathlib import Path

from .shell import MiniclusterError, alive, on_host, read_pid, run, say, spawn, wait_for, write_file
from .topology import LOG, RUN, SERVICE_USER, SSH_DIR, Host

KNOWN_HOSTS = SSH_DIR / "known_hosts"


def host_key(host: Host) -> Path:
    return SSH_DIR / "hostkeys" / host.name / "ssh_host_ed25519_key"


def config_path(host: Host) -> Path:
    return SSH_DIR / f"sshd_config.{host.name}"


def pidfile(host: Host) -> Path:
    return RUN / f"sshd-{host.name}.pid"


def sshd_config(host: Host) -> str:
    return f"""\
# Written by deploy/minicluster for {host.name}.
ListenAddress {host.ip}
Port 22
HostKey {host_key(host)}
PidFile {RUN}/sshd-{host.name}.sshd.pid
AllowUsers {SERVICE_USER}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def ensure_keys(login: list[Host]) -> None:
    lines = []
    for host in login:
        key = host_key(host)
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}",
                 "-f", str(key)])
        kind, blob = Path(f"{key}.pub").read_text().split()[:2]
        lines.append(f"{host.ip},{host.name} {kind} {blob}\n")
    write_file(KNOWN_HOSTS, "".join(lines), 0o644)


def running(host: Host) -> bool:
    pid = read_pid(pidfile(host))
    return pid is not None and alive(pid, str(config_path(host)))


def listening(host: Host) -> bool:
    try:
        with socket.create_connection((host.ip, 22), timeout=0.5) as conn:
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ensure(host: Host) -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    changed = write_file(config_path(host), sshd_config(host), 0o644)
    test = run(["/usr/sbin/sshd", "-t", "-f", str(config_path(host))], check=False)
    if test.returncode != 0:
        raise MiniclusterError(f"sshd config for {host.name} invalid: {test.stderr.strip()}")
    if running(host) and not changed:
        return
    if running(host):
        from .shell import terminate
        terminate([read_pid(pidfile(host)) or 0])
    say(f"starting sshd on {host.name}")
    spawn(on_host(host.name, ["/usr/sbin/sshd", "-D", "-f", str(config_path(host)),
                            "-E", str(LOG / f"sshd-{host.name}.log")]),
          LOG / f"sshd-{host.name}.out", pidfile(host))


def wait_listening(login: list[Host]) -> None:
    for host in login:
        wait_for(f"sshd on {host.name}", lambda h=host: listening(h), timeout=15)
