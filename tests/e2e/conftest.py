"""The minicluster (deploy/minicluster) as a session fixture for end-to-end tests.

`minicluster` builds the cluster once per session and removes it at the end, also when
tests fail (set BWVISU_KEEP_MINICLUSTER=1 to keep it for the next run). Needs root.
Passwords and keys are read from the cluster's files on every access: a test may take
the cluster down and up again, which regenerates them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bwvisu_cli.testbed import start_up, stop_up, wait_up, write_isolated_config
from bwvisu_common.errors import BwvisuError

REPO = Path(__file__).resolve().parents[2]
MINICLUSTER = REPO / "deploy" / "minicluster" / "minicluster"
CLUSTER_JSON = Path("/var/lib/bwvisu-minicluster/cluster.json")
KEEP_ENV = "BWVISU_KEEP_MINICLUSTER"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def run_minicluster(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run deploy/minicluster/minicluster with args; never raises on a non-zero exit."""
    return subprocess.run([str(MINICLUSTER), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@dataclass(frozen=True)
class Minicluster:
    """Facts about the running minicluster, plus helpers to reach its hosts."""

    state_dir: Path
    config_path: Path
    hosts: dict[str, str]  # name -> IP, e.g. {"login0": "10.200.0.10", ...}
    roles: dict[str, str]  # name -> "login" | "compute" | "gateway"
    host_ip: str  # the machine's own address on the bridge
    users: tuple[str, ...]  # real cluster users, e.g. ("alice", "bob")
    missing_user: str  # a user name that does not exist on the cluster
    home_prefix: Path
    service_user: str  # the account the middleware logs in as ("bwvisu")
    key_file: Path
    known_hosts: Path
    passwords_file: Path
    web_password_file: Path
    partition: str
    jobcomp_log: Path

    @property
    def login_nodes(self) -> list[str]:
        return [n for n, r in self.roles.items() if r == "login"]

    @property
    def compute_nodes(self) -> list[str]:
        return [n for n, r in self.roles.items() if r == "compute"]

    @property
    def gateway_nodes(self) -> list[str]:
        return [n for n, r in self.roles.items() if r == "gateway"]

    @property
    def passwords(self) -> dict[str, str]:
        return dict(json.loads(self.passwords_file.read_text()))

    @property
    def web_password(self) -> str:
        return self.web_password_file.read_text().strip()

    def home(self, user: str) -> Path:
        return self.home_prefix / user

    def ssh_argv(self, host: str, remote: Sequence[str]) -> list[str]:
        """`ssh` to host as the service account, host key verified against known_hosts.

        remote is an argv; it is quoted here because sshd hands it to a shell.
        """
        return ["ssh", "-i", str(self.key_file), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", "-l", self.service_user, self.hosts[host],
                "--", shlex.join(remote)]

    def ssh(self, host: str, remote: Sequence[str], input: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.ssh_argv(host, remote), input=input, capture_output=True,
                              text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def in_host(self, host: str, argv: Sequence[str],
                timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run argv as root inside host's network namespace."""
        return subprocess.run(["ip", "netns", "exec", host, *argv], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def sshd_pid(self, host: str) -> int:
        return int((self.state_dir / "run" / f"sshd-{host}.pid").read_text())

    def stop_sshd(self, host: str) -> None:
        """Kill every sshd in a login node's namespace: the listener and every session, also
        those a killed listener left behind (bwvisu's open connections); `repair()` restarts it."""
        pids = subprocess.run(["ip", "netns", "pids", host], capture_output=True, text=True,
                              check=True).stdout.split()
        for pid in map(int, pids):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(pid, signal.SIGKILL)

    def set_link(self, host: str, up: bool) -> None:
        """Take a host's link to the bridge down or up: down is a cut cable (nothing is refused or
        reset, packets just go nowhere); its namespace, addresses and routes stay as they are."""
        subprocess.run(["ip", "link", "set", "dev", f"bwv-{host}", "up" if up else "down"],
                       check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)

    @contextlib.contextmanager
    def link_down(self, host: str) -> Iterator[None]:
        """The host's link is down inside the block, and up again after it, also on failure."""
        self.set_link(host, up=False)
        try:
            yield
        finally:
            self.set_link(host, up=True)

    def repair(self) -> None:
        """Run `minicluster up` again: restarts whatever a test stopped."""
        proc = run_minicluster("up")
        assert proc.returncode == 0, f"minicluster up failed:\n{proc.stdout}{proc.stderr}"

    def status(self) -> tuple[int, dict[str, object]]:
        proc = run_minicluster("status", "--json", timeout=60)
        return proc.returncode, json.loads(proc.stdout)

    def wait_port(self, ip: str, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((ip, port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing listens on {ip}:{port}") from None
                time.sleep(0.1)

    @classmethod
    def load(cls, path: Path = CLUSTER_JSON) -> Minicluster:
        data = json.loads(path.read_text())
        return cls(
            state_dir=Path(data["state-dir"]),
            config_path=Path(data["config"]),
            hosts={h["name"]: h["ip"] for h in data["hosts"]},
            roles={h["name"]: h["role"] for h in data["hosts"]},
            host_ip=data["host-ip"],
            users=tuple(data["users"]),
            missing_user=data["missing-user"],
            home_prefix=Path(data["home-prefix"]),
            service_user=data["service-user"],
            key_file=Path(data["ssh"]["key-file"]),
            known_hosts=Path(data["ssh"]["known-hosts"]),
            passwords_file=Path(data["passwords-file"]),
            web_password_file=Path(data["web-password-file"]),
            partition=data["partition"],
            jobcomp_log=Path(data["jobcomp-log"]),
        )


# Test sessions running at the same time on this machine share one cluster: each leaves
# its pid here, and only the last one to finish takes the cluster down.
SESSIONS = Path("/run/bwvisu-minicluster.sessions")


def other_sessions() -> list[int]:
    """Pids of other live pytest sessions using the minicluster."""
    live = []
    for entry in SESSIONS.glob("*") if SESSIONS.is_dir() else []:
        pid = int(entry.name) if entry.name.isdigit() else 0
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            live.append(pid)
        except (ProcessLookupError, ValueError):
            entry.unlink(missing_ok=True)
    return live


_teardown_pending = False


def _down_once() -> None:
    global _teardown_pending
    if not _teardown_pending:
        return
    _teardown_pending = False
    (SESSIONS / str(os.getpid())).unlink(missing_ok=True)
    if os.environ.get(KEEP_ENV) == "1" or other_sessions():
        return
    run_minicluster("down", timeout=120)
    with contextlib.suppress(OSError):
        SESSIONS.rmdir()


@pytest.fixture(scope="session")
def minicluster() -> Iterator[Minicluster]:
    """The running minicluster for this test session (built on first use, removed at the end)."""
    global _teardown_pending
    if os.geteuid() != 0:
        pytest.skip("the minicluster needs root (network namespaces, users, daemons)")
    SESSIONS.mkdir(exist_ok=True)
    (SESSIONS / str(os.getpid())).touch()
    _teardown_pending = True
    atexit.register(_down_once)  # if the session dies before the finally below runs
    try:
        proc = run_minicluster("up")
        if proc.returncode != 0:
            pytest.fail(f"minicluster up failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        yield Minicluster.load()
    finally:
        _down_once()


# --- the whole bwvisu system on the minicluster ------------------------------------------


@dataclass
class BwvisuSystem:
    """`bwvisu up` on the minicluster's config, with its own state dir and free ports."""

    config_path: Path
    state_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def settings(self):  # -> bwvisu_common.settings.Settings
        from bwvisu_common.settings import load_settings

        return load_settings(self.config_path)

    @property
    def runner_api_url(self) -> str:
        api = self.settings.runner_api
        return f"http://{api.host}:{api.port}"

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`bwvisu --config <this system's config> ARGS...`."""
        import sys

        bwvisu = Path(sys.executable).parent / "bwvisu"
        return subprocess.run([str(bwvisu), "--config", str(self.config_path), *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def service_log(self, name: str) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pids(self, package: str) -> list[int]:
        """Pids of this system's processes running `python -m <package>` (found by our config path)."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if package.encode() in argv and str(self.config_path).encode() in argv:
                found.append(int(proc.name))
        return found

    def wait_pid(self, package: str, other_than: int | None = None, timeout: float = 60) -> int:
        """The pid of the service once it runs (again, when `other_than` is its old pid)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in self.pids(package) if p != other_than]
            if pids:
                return pids[0]
            time.sleep(0.2)
        raise TimeoutError(f"{package} did not (re)start within {timeout:.0f} s")

    @contextlib.asynccontextmanager
    async def stores(self):  # -> AsyncIterator[tuple[JetStreamEventStore, EtcdStateStore]]
        """The system's event log and etcd store, connected for one test."""
        from bwvisu_common.connect import open_stores

        async with contextlib.AsyncExitStack() as stack:
            # NATS and etcd require credentials: appending as the scheduler-adapter (tests play the
            # cluster's part), reading every key as the operator's identity (`bwvisu status`).
            events, _ = await open_stores(self.settings, stack, "scheduler-adapter")
            _, state = await open_stores(self.settings, stack, "bwvisu-status")
            yield events, state

    @contextlib.asynccontextmanager
    async def events(self):  # -> AsyncIterator[JetStreamEventStore]
        """The system's event log, connected for one test."""
        async with self.stores() as (events, _):
            yield events

    def stop(self, timeout: float = 60) -> None:
        stop_up(self.process, timeout)


@pytest.fixture(scope="session")
def bwvisu_system(
    minicluster: Minicluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BwvisuSystem]:
    """Every bwvisu service (`bwvisu up`) against the minicluster, for the whole session.

    Own ports and state dir, so that test sessions running at the same time each have theirs."""
    base = tmp_path_factory.mktemp("bwvisu-system")
    with system_up(write_isolated_config(minicluster.config_path, base)) as system:
        yield system


@contextlib.contextmanager
def system_up(config_path: Path) -> Iterator[BwvisuSystem]:
    """`bwvisu up` on this config (state and log beside it) until the block ends."""
    base = config_path.parent
    log_path = base / "up.log"
    system = BwvisuSystem(config_path, base / "state", start_up(config_path, log_path), log_path)
    try:
        try:
            wait_up(system.process, config_path, log_path)
        except BwvisuError as exc:
            pytest.fail(str(exc))
        yield system
    finally:
        system.stop()


# --- the portal as its own process --------------------------------------------------------


@dataclass(frozen=True)
class Portal:
    """A running portal: where it answers and its log."""

    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def portal_process(config_path: Path, base: Path, name: str = "portal", host: str = "127.0.0.1",
                   **web: object) -> Iterator[Portal]:
    """`python -m web_portal` on the system's config with a free port on `host` and these `web`
    fields (kebab-case names with `_`), until the block ends."""
    from bwvisu_cli.servers import free_port, listening

    config = json.loads(config_path.read_text())
    port = free_port(host)
    fields = {k.replace("_", "-"): v for k, v in web.items()}
    config["web"] = {**config.get("web", {}), "host": host, "port": port, **fields}
    own_config = base / f"{name}.json"
    own_config.write_text(json.dumps(config, indent=2))
    log_path = base / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "web_portal", "--config", str(own_config)],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    portal = Portal(f"http://{host}:{port}", log_path)
    try:
        deadline = time.monotonic() + 90
        while not listening(host, port):
            assert process.poll() is None, f"the portal exited:\n{portal.log()}"
            assert time.monotonic() < deadline, f"the portal did not listen:\n{portal.log()}"
            time.sleep(0.3)
        yield portal
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
