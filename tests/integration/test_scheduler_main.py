"""`python -m scheduler_adapter` as a process: starts, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.samples import NO_METRICS_PORTS

pytestmark = pytest.mark.integration


def test_starts_and_stops_on_sigterm(nats_server: Server, etcd_server: Server, tmp_path: Path) -> None:
    config = {
        "bwvisu-home-prefix": "/home",
        # No sshd there: the service must still run (and say the cluster is unreachable).
        "command-nodes": [{"ip": "127.0.0.1", "port": 1, "name": "nowhere"}],
        "nats-servers": [nats_server.url],
        "etcd-servers": [f"{etcd_server.host}:{etcd_server.port}"],
        "state-dir": str(tmp_path),
        "scheduler": {"poll-interval": 0.2},
        "credentials": {"required": False, "tls": False},  # this test's servers run without auth
        "metrics": NO_METRICS_PORTS,
    }
    path = tmp_path / "bwvisu.json"
    path.write_text(json.dumps(config))
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scheduler_adapter", "--config", str(path)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        for awaited in ("scheduler-adapter running", "cannot poll Slurm"):  # up, and polled once
            while awaited not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert "scheduler-adapter stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bwvisu.json"
    path.write_text(json.dumps({"bwvisu-home-prefix": "/home", "command-nodes": []}))
    proc = subprocess.run([sys.executable, "-m", "scheduler_adapter", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "command-nodes" in proc.stderr
