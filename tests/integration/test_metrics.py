"""Every service's /metrics on real nats-server and etcd (Slurm scripted): read with prometheus-client's
own parser as `bwvisu status` reads them, and scraped by a real Prometheus server when one is installed
(Debian's `prometheus`, in the minicluster's packages)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bwvisu_cli.figures import Headline, fetch_all
from bwvisu_cli.main import project
from bwvisu_cli.servers import etcd_command, free_port, nats_command
from bwvisu_common.keyhole_client import PATH_TEMPLATE
from bwvisu_common.settings import Settings, parse_settings
from keyhole_api.service import run as run_keyhole
from runner_api.service import run as run_runner_api
from scheduler_adapter.adapters.slurm import PRIVATE_UMASK
from scheduler_adapter.service import run as run_scheduler
from tests.conditions import eventually
from tests.conftest import Server, _start, _stop
from tests.fakes.command_runner import FakeCommandRunner, fake_id
from tests.samples import dashboard_queries
from web_portal.service import run as run_portal

pytestmark = pytest.mark.integration

PASSWORD = "runner-api-password-for-tests"
# What Grafana puts in place of the dashboard's variables.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$job": ".*"}
SERVICES = ("projector", "scheduler-adapter", "runner-api", "keyhole-api", "web")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """A NATS and an etcd of this module's own: its scheduler-adapter consumes the whole stream."""
    base = tmp_path_factory.mktemp("metrics-servers")
    nats_port, etcd_port, peer = free_port(), free_port(), free_port()
    nats = _start(nats_command("127.0.0.1", nats_port, base / "js"), "127.0.0.1", nats_port, "nats-server",
                  base / "nats.log")
    try:
        etcd = _start(etcd_command("127.0.0.1", etcd_port, peer, base / "etcd"), "127.0.0.1", etcd_port,
                      "etcd", base / "etcd.log")
        try:
            yield Server("127.0.0.1", nats_port, nats), Server("127.0.0.1", etcd_port, etcd)
        finally:
            _stop(etcd)
    finally:
        _stop(nats)


def config(tmp_path: Path, nats: Server, etcd: Server) -> Settings:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "bwvisu-web.password").write_text(PASSWORD)
    (secrets / "bwvisu-web.password").chmod(0o600)
    return parse_settings(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],
        "nats-servers": [nats.url], "etcd-servers": [f"{etcd.host}:{etcd.port}"],
        "state-dir": str(tmp_path), "credentials": {"required": False, "tls": False},
        "scheduler": {"poll-interval": 0.2},
        "runner-api": {"host": "127.0.0.1", "port": free_port(),
                       "password-file": str(secrets / "bwvisu-web.password")},
        "keyhole-api": {"host": "127.0.0.1", "port": free_port()},
        "web": {"host": "127.0.0.1", "port": free_port()},
        "metrics": {"host": "127.0.0.1", "up-port": 0, "projector-port": free_port(),
                    "scheduler-adapter-port": free_port(), "gateway-agent-port": 0},
    }).encode())


def targets(conf: Settings) -> dict[str, str]:
    m = conf.metrics
    return {"projector": f"127.0.0.1:{m.projector_port}",
            "scheduler-adapter": f"127.0.0.1:{m.scheduler_adapter_port}",
            "runner-api": f"127.0.0.1:{conf.runner_api.port}",
            "keyhole-api": f"127.0.0.1:{conf.keyhole_api.port}", "web": f"127.0.0.1:{conf.web.port}"}


@contextlib.asynccontextmanager
async def services(conf: Settings) -> AsyncIterator[None]:
    """The projector and every service without a gateway, each as its `run()` in this process."""
    slurm = FakeCommandRunner().on(["id", "--", "*"], fake_id({"alice": (1001, ["alice"])}))
    slurm.on([*PRIVATE_UMASK, "sudo", "-n", "-u", "alice", "sbatch", "**"], "42\n")
    slurm.on(["squeue", "**"], "")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(project(conf, stop)),
             asyncio.create_task(run_scheduler(conf, stop=stop, runner=slurm)),
             asyncio.create_task(run_runner_api(conf, stop=stop)),
             asyncio.create_task(run_keyhole(conf, stop=stop)),
             asyncio.create_task(run_portal(conf, stop=stop))]
    try:
        await eventually(lambda: _all_answer(conf), "every service serves /metrics", timeout=60, interval=0.2)
        yield
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()


async def _all_answer(conf: Settings) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            for target in targets(conf).values():
                if (await client.get(f"http://{target}/metrics", timeout=2)).status_code != 200:
                    return False
        except httpx.HTTPError:
            return False
    return True


async def some_traffic(conf: Settings) -> str:
    """One job submitted through runner-api, one port request keyhole-api refuses; the job's id."""
    auth = "Basic " + base64.b64encode(f"bwvisu-web:{PASSWORD}".encode()).decode()
    async with httpx.AsyncClient() as client:
        job = {"uid": "alice", "template-name": "sleep", "variables": {"seconds": "1"}}
        answer = await client.post(f"http://127.0.0.1:{conf.runner_api.port}/jobs", json=job,
                                   headers={"Authorization": auth}, timeout=30)
        assert answer.status_code == 200, answer.text
        refused = await client.post(f"http://127.0.0.1:{conf.keyhole_api.port}"
                                    + PATH_TEMPLATE.format(job_id="nosuchjob"), content=b"{}", timeout=5)
        assert refused.status_code == 404
    return str(answer.json()["job-id"])


async def test_each_service_serves_its_figures_in_prometheus_text_format(servers, tmp_path):
    conf = config(tmp_path, *servers)
    async with services(conf):
        await some_traffic(conf)
        urls = {name: f"http://{target}/metrics" for name, target in targets(conf).items()}

        async def figures() -> dict[str, Any]:
            return await asyncio.to_thread(fetch_all, urls)

        async def job_counted() -> bool:
            samples = (await figures())["projector"]
            return not isinstance(samples, str) and any(
                s.name == "bwvisu_jobs" and s.value >= 1 for s in samples)

        await eventually(job_counted, "the projector counts the job", timeout=15)
        found = await figures()
        for name, samples in found.items():
            assert not isinstance(samples, str), f"{name}: {samples}"
            names = {s.name for s in samples}
            assert "process_resident_memory_bytes" in names, name  # every process: its memory
            assert "bwvisu_event_lag_events" in names, f"{name} reports its read model's lag"
        headline = Headline()
        for name, samples in found.items():
            headline.add(name, samples)
        assert sum(headline.jobs.values()) >= 1 and set(headline.jobs) >= {"submitted", "finished"}
        assert max(headline.submit_buckets.values()) >= 1, "the submission was timed"
        assert headline.squeue[1] >= 1, "the watcher's cycles were timed"
        assert "scheduler-adapter/scheduler-adapter" in headline.lag, "the durable consumer's lag"
        assert any(line.startswith("submit: p50 ") for line in headline.lines()), headline.lines()
        refusals = [s for s in found["keyhole-api"] if s.name == "bwvisu_keyhole_refusals_total"]
        assert any(s.labels == {"reason": "unknown-job"} and s.value >= 1 for s in refusals), refusals


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, scrape: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A Prometheus server scraping `scrape` (job name -> target) every second; a client of its API."""
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": name, "static_configs": [{"targets": [target]}]}
                                 for name, target in scrape.items()]}
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # YAML reads JSON
    argv = ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"]
    log = tmp_path / "prometheus.log"
    server = await asyncio.to_thread(_start, argv, "127.0.0.1", port, "prometheus", log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api:
            yield api
    finally:
        await asyncio.to_thread(_stop, server)


async def query(api: httpx.AsyncClient, promql: str) -> dict[str, float]:
    """An instant query's answer, by the `job` label."""
    answer = (await api.get("/api/v1/query", params={"query": promql})).json()
    assert answer["status"] == "success", answer
    return {r["metric"].get("job", ""): float(r["value"][1]) for r in answer["data"]["result"]}


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed")
async def test_a_prometheus_server_scrapes_every_service(servers, tmp_path):
    conf = config(tmp_path, *servers)
    async with services(conf):
        job_id = await some_traffic(conf)
        async with prometheus(tmp_path, targets(conf)) as api:
            async def every_target_up() -> bool:
                return await query(api, "up") == dict.fromkeys(SERVICES, 1.0)

            async def submission_timed() -> bool:
                counts = await query(api, "sum by (job) (bwvisu_submit_duration_seconds_count)")
                return counts.get("runner-api", 0.0) >= 1

            await eventually(every_target_up, "Prometheus finds every service up", timeout=30, interval=0.5)
            await eventually(submission_timed, "Prometheus holds the submission's timing", timeout=15,
                             interval=0.5)
            jobs = await query(api, "sum by (job) (bwvisu_jobs)")
            assert jobs.get("projector", 0.0) >= 1, f"job {job_id} counted by state: {jobs}"
            lags = await query(api, "max by (job) (bwvisu_event_lag_events)")
            assert set(lags) == set(SERVICES), lags
            for expr in dashboard_queries():  # each of the dashboard's queries is one Prometheus runs
                await query(api, re.sub(r"\$\w+", lambda m: GRAFANA_VARIABLES[m.group(0)], expr))
