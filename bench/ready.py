"""App listening -> `available` in GET /jobs/<id>, p50/p95 over N jobs, on the minicluster.

    python -m bench.ready [N] [--config /var/lib/bwvisu-minicluster/bwvisu.json]

Starts a bwvisu of its own (`bwvisu up` with its own ports and state dir) on the cluster of
`--config`, gateway agents included, and submits N `port-echo` jobs one after the other
through runner-api. Each job's server starts listening `delay` seconds after its port was
granted; the clock starts when a connection through the gateway first succeeds and stops
when runner-api first answers `available`. Target: p95 <= 1 s.

It runs beside any other bwvisu on the same cluster: its jobs and its gateway rules carry a
job tag of its own (bwvisu_cli.testbed). Other load on the machine shows in the numbers.
Needs root and a running minicluster.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bwvisu_cli.servers import listening
from bwvisu_cli.testbed import isolated_system, runner_api_client_args
from bwvisu_common.settings import Settings, load_settings

DEFAULT_CONFIG = "/var/lib/bwvisu-minicluster/bwvisu.json"
TARGET = 1.0  # seconds, DESIGN.md section 8
DELAY = 2  # seconds between the grant and the application listening


async def first_connect(host: str, port: int, timeout: float = 30) -> float:
    """perf_counter() at the first connection through the gateway that succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(listening, host, port):
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered on {host}:{port} in {timeout:.0f} s")
        await asyncio.sleep(0.005)


async def wait_agents(settings: Settings, timeout: float = 60) -> None:
    """Until keyhole-api hears every gateway agent's heartbeat."""
    url = settings.keyholed_servers[0] + "/healthz"
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if len((await http.get(url)).json()["gateways-alive"]) == len(settings.gateway_nodes):
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("the gateway agents did not report alive")


async def poll_job(api: httpx.AsyncClient, job_id: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = (await api.get(f"/jobs/{job_id}")).json()
        if job["state"] == "finished":
            raise RuntimeError(f"job {job_id} ended: {job['details']}")
        if done(job):
            return job
        await asyncio.sleep(0.02)
    raise TimeoutError(f"job {job_id} did not get there in {timeout:.0f} s")


async def one_job(api: httpx.AsyncClient) -> float:
    """Listening -> available for one port-echo job, in seconds."""
    r = await api.post("/jobs", json={"uid": "alice", "template-name": "port-echo",
                                      "variables": {"delay": str(DELAY), "seconds": "30", "runtime": "2"}})
    r.raise_for_status()
    job_id = r.json()["job-id"]
    try:
        job = await poll_job(api, job_id, lambda j: bool(j["services"]))
        service = job["services"][0]
        if job["state"] == "available":
            raise RuntimeError(f"job {job_id} listened before its forward was visible; raise DELAY")
        listening = await first_connect(service["external-ip"], service["external-port"])
        await poll_job(api, job_id, lambda j: j["state"] == "available", timeout=10)
        return time.perf_counter() - listening
    finally:
        await api.delete(f"/jobs/{job_id}")


async def measure(config_path: Path, n: int) -> list[float]:
    settings = load_settings(config_path)
    await wait_agents(settings)
    async with httpx.AsyncClient(**runner_api_client_args(settings), timeout=90) as api:
        return [await one_job(api) for _ in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.ready", description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=20, help="number of jobs (default 20)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="the cluster's bwvisu config")
    args = parser.parse_args()
    source = Path(args.config)
    if not source.exists():
        sys.exit(f"{source} does not exist: bring the minicluster up first "
                 "(deploy/minicluster/minicluster up)")
    with isolated_system(source) as config:
        lat = sorted(asyncio.run(measure(config, args.n)))
    p50 = statistics.median(lat)
    p95 = lat[min(len(lat) - 1, int(round(0.95 * len(lat))) - 1)]
    print(f"app listening -> available in GET /jobs/<id>, {args.n} jobs")
    print(f"  p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {lat[-1] * 1000:7.1f} ms")
    print(f"  p95 / {TARGET:g} s target: {p95 / TARGET:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
