"""A second bwvisu beside any other on the same cluster, for tests and benchmarks:
its own state directory and free ports, started with `bwvisu up` as a child process."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bwvisu_cli.servers import free_port, free_port_in, listening
from bwvisu_common.errors import BwvisuError
from bwvisu_common.settings import Settings, host_port, load_settings

BWVISU = str(Path(sys.executable).parent / "bwvisu")
# Isolated systems' NATS and etcd listen here; the minicluster rejects compute nodes' connections to it.
SERVER_PORTS = (14000, 14999)


def _with_port(address: str, port: int) -> str:
    """`nats://h:1`, `h:1` or `http://h:1` with another port; the host stays."""
    scheme = address.split("//", 1)[0] + "//" if "//" in address else ""
    host, _ = host_port(address, port)
    return f"{scheme}{host}:{port}"


def isolated_config(config: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    """`config` with a fresh state dir and free ports for NATS, etcd and every API."""
    out = dict(config, **{"state-dir": str(state_dir)})
    nats = list(config.get("nats-servers", ["nats://127.0.0.1"]))
    etcd = list(config.get("etcd-servers", ["127.0.0.1"]))
    # From the range the minicluster's compute nodes are firewalled from (mclib/firewall.py).
    nats_port = free_port_in(*SERVER_PORTS, host_port(nats[0], 4222)[0])
    etcd_port = nats_port
    while etcd_port == nats_port:
        etcd_port = free_port_in(*SERVER_PORTS, host_port(etcd[0], 2379)[0])
    out["nats-servers"] = [_with_port(nats[0], nats_port)]
    out["etcd-servers"] = [_with_port(etcd[0], etcd_port)]
    keyhole = free_port()
    out["keyhole-api"] = {**dict(config.get("keyhole-api", {})), "port": keyhole}
    servers = list(config.get("keyholed-servers", []))
    out["keyholed-servers"] = [_with_port(s, keyhole) for s in servers]
    for section in ("runner-api", "web"):
        out[section] = {**dict(config.get(section, {})), "port": free_port()}
    # A tag of its own: a watcher adopts every Slurm job with its tag, so two systems on one
    # cluster must not share one (nor be a prefix of the other's: no "bwvisu-…").
    scheduler = dict(config.get("scheduler", {}))
    out["scheduler"] = {**scheduler, "job-tag": f"bwvtest{secrets.token_hex(3)}"}
    return out


def write_isolated_config(source: Path, base: Path) -> Path:
    """Write the isolated copy of `source` into `base`; return its path."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / "bwvisu.json"
    path.write_text(json.dumps(isolated_config(json.loads(source.read_text()), base / "state"), indent=2))
    return path


def start_up(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        return subprocess.Popen([BWVISU, "--config", str(config_path), "up"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def wait_up(process: subprocess.Popen[bytes], config_path: Path, log_path: Path,
            timeout: float = 120) -> None:
    """Until `bwvisu status` is healthy and runner-api listens; BwvisuError with the log otherwise."""
    api = load_settings(config_path).runner_api
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise BwvisuError(f"bwvisu up exited ({process.returncode}):\n{log_path.read_text()[-4000:]}")
        status = subprocess.run([BWVISU, "--config", str(config_path), "status"], capture_output=True,
                                text=True, timeout=30, stdin=subprocess.DEVNULL)
        if status.returncode == 0 and listening(api.host, api.port):
            return
        if time.monotonic() > deadline:
            stop_up(process)
            raise BwvisuError(f"bwvisu did not come up in {timeout:.0f} s:\n{status.stdout}{status.stderr}\n"
                              f"{log_path.read_text()[-4000:]}")
        time.sleep(0.5)


def stop_up(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Ctrl-C, as a person would; kill if it does not stop."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def isolated_system(source: Path, base: Path | None = None) -> Iterator[Path]:
    """`bwvisu up` on an isolated copy of the config at `source`, for the block; yields its config."""
    with contextlib.ExitStack() as stack:
        if base is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bwvisu-testbed-")))
        config = write_isolated_config(source, base)
        log = base / "up.log"
        process = start_up(config, log)
        stack.callback(stop_up, process)
        wait_up(process, config, log)
        yield config


def runner_api_client_args(settings: Settings) -> dict[str, Any]:
    """base_url and basic auth for an httpx client of this system's runner-api."""
    api = settings.runner_api
    password = Path(api.password_file).read_text().strip()
    scheme = "https" if api.tls_cert else "http"
    return {"base_url": f"{scheme}://{api.host}:{api.port}", "auth": (api.user, password)}
