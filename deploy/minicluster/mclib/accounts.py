"""Cluster users, the bwvisu service account, its SSH key and sudo rules."""
from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
from pathlib import Path

from .shell import MiniclusterError, pids_of_uid, run, terminate, write_file
from .topology import (
    ADMIN_GROUP,
    ADMIN_USER,
    HOME_PREFIX,
    MISSING_USER,
    SERVICE_HOME,
    SERVICE_USER,
    SSH_DIR,
    STATE,
    SUDOERS,
    SUDOERS_EXTEND,
    USERS,
    USERS_GROUP,
    USERS_JSON,
)

# tail reads a job's log as its user for the portal: no more than sbatch as that user allows.
SUDO_COMMANDS = "/usr/bin/sbatch, /usr/bin/squeue, /usr/bin/scancel, /usr/bin/id, /usr/bin/tail"
SUDOERS_TEXT = f"""\
# Written by deploy/minicluster; removed by `minicluster down`.
# sudo starts the command in the target user's home, so Slurm jobs run there.
Defaults:{SERVICE_USER} !requiretty, runcwd=~
{SERVICE_USER} ALL=(%{USERS_GROUP}) NOPASSWD: {SUDO_COMMANDS}
"""
# Extend (scheduler.max-extension): raising a job's time limit is an operator's right in Slurm, so
# scontrol runs as root, and only as exactly `scontrol update JobId=<digits> TimeLimit=<digits>`
# (a sudo >= 1.9.10 regular expression). A file of its own, beside the one above.
SUDOERS_EXTEND_TEXT = f"""\
# Written by deploy/minicluster; removed by `minicluster down`.
{SERVICE_USER} ALL=(root) NOPASSWD: /usr/bin/scontrol ^update JobId=[0-9]+ TimeLimit=[0-9]+$
"""
KEY_FILE = SSH_DIR / "id_ed25519"


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _ours(name: str) -> bool:
    entry = _user(name)
    return entry is not None and entry.pw_dir.startswith(str(STATE) + "/")


def _ensure_user(name: str, home: Path, system: bool = False) -> None:
    entry = _user(name)
    if entry is None:
        home.parent.mkdir(parents=True, exist_ok=True)
        argv = ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
                "--user-group"]
        run([*argv, *(["--system"] if system else []), name])
        entry = _user(name)
        assert entry is not None
    if not Path(entry.pw_dir).is_dir():
        Path(entry.pw_dir).mkdir(parents=True, mode=0o750)
        os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)


def ensure_users() -> dict[str, str]:
    """Create alice, bob and the portal's admin; returns their portal passwords (kept in users.json)."""
    HOME_PREFIX.mkdir(parents=True, exist_ok=True)
    os.chmod(HOME_PREFIX, 0o755)
    try:
        passwords = json.loads(USERS_JSON.read_text())
    except (OSError, ValueError):
        passwords = {}
    logins = (*USERS, ADMIN_USER)
    for name in logins:
        _ensure_user(name, HOME_PREFIX / name)
        passwords.setdefault(name, secrets.token_urlsafe(12))
    ensure_users_group()
    ensure_admin_group()
    passwords = {name: passwords[name] for name in logins}
    write_file(USERS_JSON, json.dumps(passwords, indent=2) + "\n", 0o600)
    run(["chpasswd"], input="".join(f"{u}:{p}\n" for u, p in passwords.items()))
    ensure_missing_user_absent()
    return passwords


def ensure_admin_group() -> None:
    """web.admin-group, with the admin in it: the portal shows it the admin pages."""
    try:
        grp.getgrnam(ADMIN_GROUP)
    except KeyError:
        run(["groupadd", ADMIN_GROUP])
    if _user(ADMIN_USER) is not None and ADMIN_USER not in grp.getgrnam(ADMIN_GROUP).gr_mem:
        run(["usermod", "--append", "--groups", ADMIN_GROUP, ADMIN_USER])


def ensure_users_group() -> None:
    """The users' group (the sudo rule's target), with alice and bob in it."""
    try:
        grp.getgrnam(USERS_GROUP)
    except KeyError:
        run(["groupadd", USERS_GROUP])
    for name in USERS:
        if _user(name) is not None and name not in grp.getgrnam(USERS_GROUP).gr_mem:
            run(["usermod", "--append", "--groups", USERS_GROUP, name])


def ensure_missing_user_absent() -> None:
    if _user(MISSING_USER) is None:
        return
    if _ours(MISSING_USER):
        run(["userdel", MISSING_USER])
        return
    raise MiniclusterError(f"user {MISSING_USER!r} exists on this machine, but the minicluster "
                           "needs it absent for negative tests")


def ensure_service_account() -> None:
    _ensure_user(SERVICE_USER, SERVICE_HOME, system=True)
    SSH_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(SSH_DIR, 0o755)
    if not KEY_FILE.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bwvisu@minicluster",
             "-f", str(KEY_FILE)])
    entry = _user(SERVICE_USER)
    assert entry is not None
    dot_ssh = Path(entry.pw_dir) / ".ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    auth = dot_ssh / "authorized_keys"
    write_file(auth, Path(f"{KEY_FILE}.pub").read_text(), 0o600)
    for path in (dot_ssh, auth):
        os.chown(path, entry.pw_uid, entry.pw_gid)


def ensure_sudoers() -> None:
    for path, text in ((SUDOERS, SUDOERS_TEXT), (SUDOERS_EXTEND, SUDOERS_EXTEND_TEXT)):
        _ensure_sudoers_file(path, text)


def _ensure_sudoers_file(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")  # sudo ignores names with a dot
    write_file(tmp, text, 0o440)
    check = run(["visudo", "-cf", str(tmp)], check=False)
    if check.returncode != 0:
        tmp.unlink()
        raise MiniclusterError(f"visudo rejected the sudoers file: {check.stdout}{check.stderr}")
    os.replace(tmp, path)


def users_present() -> list[str]:
    return [u for u in (*USERS, SERVICE_USER, ADMIN_USER) if _ours(u)]


def remove_users() -> None:
    for name in (*USERS, SERVICE_USER, ADMIN_USER, MISSING_USER):
        if _ours(name):
            terminate(pids_of_uid(_user(name).pw_uid), timeout=2)  # type: ignore[union-attr]
            run(["userdel", "--force", name], check=False)
    for group in (USERS_GROUP, ADMIN_GROUP):
        if any(g.gr_name == group for g in grp.getgrall()):
            run(["groupdel", group], check=False)


def remove_sudoers() -> None:
    for path in (SUDOERS, SUDOERS.with_name(".bwvisu-minicluster.tmp"), SUDOERS_EXTEND,
                 SUDOERS_EXTEND.with_name(f".{SUDOERS_EXTEND.name}.tmp")):
        if path.exists():
            path.unlink()


def remove_home_trees() -> None:
    for path in (HOME_PREFIX, SERVICE_HOME.parent):
        shutil.rmtree(path, ignore_errors=True)
