"""`bwvisu up`, `status` and `rebuild-state` as a person runs them, on free ports."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bwvisu_cli.servers import free_port
from bwvisu_cli.testbed import stop_up
from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore

pytestmark = pytest.mark.integration

BWVISU = [sys.executable, "-m", "bwvisu_cli"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    file = tmp_path / "bwvisu.json"
    file.write_text(json.dumps({
        "bwvisu-home-prefix": "/home",
        "command-nodes": [{"ip": "127.0.0.1"}],
        "etcd-servers": [f"127.0.0.1:{free_port()}"],
        "nats-servers": [f"nats://127.0.0.1:{free_port()}"],
        "state-dir": "state",
        "runner-api": {"port": free_port()},
        "keyhole-api": {"port": free_port()},
        "web": {"port": free_port()},
        "metrics": {"up-port": free_port(), "projector-port": free_port(),
                    "scheduler-adapter-port": free_port()},
    }))
    return file


def bwvisu(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BWVISU, "--config", str(config), *args], capture_output=True, text=True,
                          timeout=60)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_up_status_second_up_and_a_clean_stop(config: Path):
    up = subprocess.Popen([*BWVISU, "--config", str(config), "up"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        status_file = config.parent / "state" / "up.json"
        wait_for(status_file.exists)
        children = json.loads(status_file.read_text())["processes"]
        assert [c["name"] for c in children][:3] == ["nats-server", "etcd", "projector"]

        # The portal's API answers with the password `up` created, and only with it.
        api = next(c for c in children if c["name"] == "runner-api")["address"]
        password = (config.parent / "state" / "secrets" / "bwvisu-web.password").read_text().strip()
        ok = httpx.get(f"http://{api}/jobs", auth=("bwvisu-web", password), timeout=10)
        assert ok.status_code == 200 and ok.json() == {"jobs": []}
        assert httpx.get(f"http://{api}/jobs", auth=("bwvisu-web", "guess"), timeout=10).status_code == 401
        # No cluster behind this config: a submission is an honest 503, not a 500 or a hang.
        refused = httpx.post(f"http://{api}/jobs", auth=("bwvisu-web", password), timeout=60,
                             json={"uid": "alice", "template-name": "xpra-desktop", "variables": {}})
        assert refused.status_code in (400, 503), refused.text

        status = bwvisu(config, "status")
        assert status.returncode == 0, status.stdout
        assert "nats-server" in status.stdout and "running" in status.stdout
        # Where each process serves its metrics, all read, and the figures read there.
        served = status.stdout.split("metrics (Prometheus):")[1].split("figures:")[0]
        assert {line.split()[0] for line in served.strip().splitlines()} >= {
            "bwvisu", "projector", "scheduler-adapter", "keyhole-api", "runner-api", "web"}, served
        assert "cannot read" not in served, served
        assert "\n    jobs: " in status.stdout and "\n    restarts: 0" in status.stdout, status.stdout

        again = bwvisu(config, "up")
        assert again.returncode == 1 and "already up" in again.stderr
        assert up.poll() is None and bwvisu(config, "status").returncode == 0, "second up hurt the first"

        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=30)
        assert up.returncode == 0, out
        assert "bwvisu stopped." in out
        for pid in (c["pid"] for c in children):
            wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 5)
        assert bwvisu(config, "status").returncode == 3
    finally:
        stop_up(up)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_port_in_use_is_a_clear_error(config: Path, nats_server):
    data = json.loads(config.read_text())
    data["nats-servers"] = [nats_server.url]
    config.write_text(json.dumps(data))
    result = bwvisu(config, "up")
    assert result.returncode == 1
    assert f"already listens on 127.0.0.1:{nats_server.port}" in result.stderr


def test_a_bad_config_names_the_field(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"bwvisu-home-prefix": "/h", "command-nodes": [{"ip": "x", "prot": 22}]}))
    result = bwvisu(bad, "status")
    assert result.returncode == 1 and "unknown field `prot`" in result.stderr


async def test_rebuild_state_reproduces_the_read_model(config: Path, nats_server, etcd_server, event_store):
    data = json.loads(config.read_text())
    data["nats-servers"] = [nats_server.url]
    data["etcd-servers"] = [f"{etcd_server.host}:{etcd_server.port}"]
    data["credentials"] = {"required": False, "tls": False}  # this test's servers run without auth
    config.write_text(json.dumps(data))
    job = ev.new_job_id()
    await event_store.append([ev.JobSubmitted(job_id=job, uid="alice", template_name="t"),
                        ev.JobQueued(job_id=job, slurm_id="5")], 0)
    state = await EtcdStateStore.connect(etcd_server.host, etcd_server.port)
    try:
        first = bwvisu(config, "rebuild-state")
        assert first.returncode == 0, first.stderr
        before = await state.load_jobs()
        assert before[0][job].slurm_id == "5"
        second = bwvisu(config, "rebuild-state")
        assert second.returncode == 0 and "rebuilt the read model" in second.stdout
        assert await state.load_jobs() == before
    finally:
        await state.close()


def test_children_do_not_outlive_a_killed_up(config: Path):
    up = subprocess.Popen([*BWVISU, "--config", str(config), "up"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        status_file = config.parent / "state" / "up.json"
        wait_for(status_file.exists)
        children = [c["pid"] for c in json.loads(status_file.read_text())["processes"]]
        assert children, "up started no child: nothing to outlive it"
        up.kill()  # no chance to stop anything itself
        up.wait()
        for pid in children:
            wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 15)
    finally:
        stop_up(up)


def test_runner_api_serves_tls_when_configured(config: Path):
    cert, key = config.parent / "api.crt", config.parent / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    data = json.loads(config.read_text())
    data["runner-api"].update({"tls-cert": str(cert), "tls-key": str(key)})
    config.write_text(json.dumps(data))
    up = subprocess.Popen([*BWVISU, "--config", str(config), "up"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        wait_for((config.parent / "state" / "up.json").exists)
        url = f"127.0.0.1:{data['runner-api']['port']}"
        password = (config.parent / "state" / "secrets" / "bwvisu-web.password").read_text().strip()
        trust = ssl.create_default_context(cafile=str(cert))
        answer = httpx.get(f"https://{url}/jobs", auth=("bwvisu-web", password), verify=trust, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"jobs": []}
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{url}/jobs", timeout=5)  # plain HTTP is not served
    finally:
        stop_up(up)


def test_status_names_a_restarted_childs_new_pid_and_its_failure(config: Path):
    up = subprocess.Popen([*BWVISU, "--config", str(config), "up"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        status_file = config.parent / "state" / "up.json"
        wait_for(status_file.exists)

        def projector() -> dict:
            processes = json.loads(status_file.read_text())["processes"]
            return next(c for c in processes if c["name"] == "projector")

        first = projector()
        assert first["restarts"] == 0 and first["last_failure"] is None
        os.kill(first["pid"], signal.SIGKILL)
        wait_for(lambda: projector()["restarts"] == 1 and projector()["pid"] != first["pid"])
        assert oct(status_file.stat().st_mode & 0o777) in ("0o640", "0o600")

        again = projector()
        assert again["last_failure"]["how"] == "killed by SIGKILL"
        status = bwvisu(config, "status")
        line = next(line for line in status.stdout.splitlines() if line.strip().startswith("projector"))
        assert f"pid {again['pid']}" in line and "running" in line and "restarts 1" in line, status.stdout
        assert "last failure: killed by SIGKILL" in status.stdout
        assert "DEAD" not in status.stdout
    finally:
        stop_up(up)


def test_with_json_logs_every_service_writes_one_object_per_line(config: Path):
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "logging": {"format": "json"}}))
    up = subprocess.Popen([*BWVISU, "--config", str(config), "up"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        status_file = config.parent / "state" / "up.json"
        wait_for(status_file.exists)
        children = json.loads(status_file.read_text())["processes"]
        ours = {c["name"]: Path(c["log"]) for c in children if c["name"] not in ("nats-server", "etcd")}
        assert {"projector", "runner-api", "scheduler-adapter", "keyhole-api", "web"} <= set(ours)
        # Each says it runs once it follows the stream.
        wait_for(lambda: all(p.exists() and "running" in p.read_text() for p in ours.values()), 60)
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
        for name, path in ours.items():
            # Every line is one JSON object: the service's own, and `up`'s line before them.
            entries = [json.loads(line) for line in path.read_text().splitlines()]
            assert all({"time", "level", "service", "logger", "message"} <= set(e) for e in entries), name
            assert entries[0]["service"] == "bwvisu-up" and entries[0]["message"].startswith("starting: ")
            assert {e["service"] for e in entries[1:]} == {name}, name
            assert any(e["message"] == f"{name} running" for e in entries), name
    finally:
        stop_up(up)
