"""10,000 jobs of 1,000 users through the real services: their memory, the job API, the portal.

The jobs enter as the events they would produce (10,000 queued jobs are Slurm's whole default
MaxJobCount, and submitting them through the system takes minutes): real nats-server and etcd, and
the projector, runner-api, keyhole-api and the portal as their own processes on loopback, each
following the same stream as in production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

from bench.scale_gateway import rss_mb
from bwvisu_cli.servers import free_port
from bwvisu_common import events as ev
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats

PASSWORD = "scale-bench-runner-api-password"
TARGET_API = 0.020
TARGET_PORTAL = 0.050
TARGET_RSS_MB = 200
SAMPLES = 200


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def settings_file(base: Path, nats_url: str, etcd: tuple[str, int]) -> tuple[Path, int, int]:
    secrets = base / "secrets"
    secrets.mkdir()
    (secrets / "bwvisu-web.password").write_text(PASSWORD)
    (secrets / "bwvisu-web.password").chmod(0o600)
    api, web = free_port(), free_port()
    path = base / "bwvisu.json"
    path.write_text(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],
        "gateway-nodes": [{"name": "gw0", "internal-ip": "10.8.0.2", "external-ip": "10.8.0.1"}],
        "nats-servers": [nats_url], "etcd-servers": [f"{etcd[0]}:{etcd[1]}"],
        "state-dir": str(base), "credentials": {"required": False, "tls": False},
        "runner-api": {"host": "127.0.0.1", "port": api},
        "web": {"host": "127.0.0.1", "port": web, "auth": "header", "trusted-proxies": ["127.0.0.1"]},
    }))
    return path, api, web


@contextlib.contextmanager
def services(config: Path, logs: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """The services that hold the read model, each its own process; all stopped with the block."""
    commands = {"projector": ["bwvisu_cli", "project"], "runner-api": ["runner_api"],
                "keyhole-api": ["keyhole_api"], "web": ["web_portal"]}
    procs = {}
    try:
        for name, (module, *rest) in commands.items():
            out = (logs / f"{name}.log").open("wb")
            procs[name] = subprocess.Popen([sys.executable, "-m", module, *rest, "--config", str(config)],
                                           stdout=out, stderr=subprocess.STDOUT)
        yield procs
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def ready(url: str, procs: dict[str, subprocess.Popen[bytes]], logs: Path,
                timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            assert not dead, f"{dead[0]} stopped: {(logs / f'{dead[0]}.log').read_text()[-2000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{url} did not answer"
            await asyncio.sleep(0.2)


async def timed(samples: int, request: Callable[[int], Awaitable[None]]) -> list[float]:
    took = []
    for i in range(samples):
        t0 = time.perf_counter()
        await request(i)
        took.append(time.perf_counter() - t0)
    return took


def report(label: str, samples: list[float], target: float) -> None:
    verdict = "met" if p95(samples) <= target else "MISSED"
    print(f"  {label:<40} p50 {statistics.median(samples) * 1000:6.1f} ms   p95 {p95(samples) * 1000:6.1f} ms"
          f"   target p95 <= {target * 1000:.0f} ms: {verdict}")


async def job_api(api: int, jobs: dict[str, str], rng: random.Random) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"bwvisu-web:{PASSWORD}".encode()).decode()}
    ids = list(jobs)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api}", headers=auth) as client:
        async def by_user(i: int) -> None:
            uid = jobs[rng.choice(ids)]
            r = await client.get("/jobs", params={"uid": uid})
            assert r.status_code == 200 and r.json()["jobs"], r.text

        async def one(i: int) -> None:
            job_id = rng.choice(ids)
            r = await client.get(f"/jobs/{job_id}", params={"uid": jobs[job_id]})
            assert r.status_code == 200, r.text

        await timed(20, by_user)  # warm
        report("runner-api GET /jobs?uid=<user>", await timed(SAMPLES, by_user), TARGET_API)
        report("runner-api GET /jobs/<id>?uid=<owner>", await timed(SAMPLES, one), TARGET_API)


async def portal(web: int, jobs: dict[str, str], ports: dict[str, int], rng: random.Random,
                 store: JetStreamEventStore) -> None:
    ids = list(jobs)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web}") as client:
        async def page(i: int) -> None:
            user = jobs[rng.choice(ids)]
            r = await client.get("/sessions", headers={"X-Remote-User": user})
            assert r.status_code == 200 and "s-job" in r.text, r.status_code

        await timed(10, page)
        report("portal GET /sessions", await timed(SAMPLES, page), TARGET_PORTAL)
        first, update = await feed(client, jobs, ports, rng, store)
        report("portal live feed: connect to first cards", first, TARGET_PORTAL)
        report("portal live feed: event to updated cards", update, TARGET_PORTAL)


async def feed(client: httpx.AsyncClient, jobs: dict[str, str], ports: dict[str, int], rng: random.Random,
               store: JetStreamEventStore) -> tuple[list[float], list[float]]:
    """Per sample: open one user's stream and time its first cards; then the job's port answers
    (PortOpen, as the gateway's probe says it) and time until the stream shows the job available."""
    first, update = [], []
    for job_id in rng.sample(list(jobs), SAMPLES // 4):
        t0 = time.perf_counter()
        async with client.stream("GET", "/sessions/events", headers={"X-Remote-User": jobs[job_id]},
                                 timeout=30) as stream:
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data:"):
                    first.append(time.perf_counter() - t0)
                    break
            t0 = time.perf_counter()
            await store.append([ev.PortOpen(job_id=job_id, external_port=ports[job_id], gateway="gw0")])
            async for line in lines:
                if line.startswith("data:") and f'"id":"{job_id}","state":"available"' in line:
                    update.append(time.perf_counter() - t0)
                    break
    return first, update


async def measure(nats_url: str, etcd: tuple[str, int], jobs: dict[str, str], ports: dict[str, int]) -> None:
    """`jobs`: job id -> its user, every job in the log already; `ports`: job id -> its forwarded port."""
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bwvisu-scale-") as tmp:
        config, api, web = settings_file(Path(tmp), nats_url, etcd)
        with services(config, Path(tmp)) as procs:
            t0 = time.perf_counter()
            await ready(f"http://127.0.0.1:{api}/healthz", procs, Path(tmp))
            await ready(f"http://127.0.0.1:{web}/healthz", procs, Path(tmp))
            print(f"stack: {len(jobs)} jobs of {len(set(jobs.values()))} users (fed as events, see above); "
                  f"services answered {time.perf_counter() - t0:.1f} s after start")
            nc = await connect_nats([nats_url], "bench-stack")
            try:
                store = JetStreamEventStore(nc)
                await job_api(api, jobs, rng)
                await portal(web, jobs, ports, rng, store)
            finally:
                await nc.drain()
            for name, proc in procs.items():
                size = rss_mb(proc.pid)
                verdict = "met" if size <= TARGET_RSS_MB else "MISSED"
                print(f"  RSS {name:<12} {size:6.1f} MB   target <= {TARGET_RSS_MB} MB: {verdict}")
