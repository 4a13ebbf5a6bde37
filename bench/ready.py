"""App listening -> PortOpen -> `available` in the read model, p50/p95 over 20 jobs, on the minicluster.

    python -m bench.ready [N]

Runs its own NATS, etcd, keyhole-api and one gateway agent per gateway (inside the gateways'
netns) on free ports of the bridge address, so it never disturbs a running `bwvisu up`.
Jobs are driven at the event level: JobStarted is appended here, the keyhole client runs in
netns cn0 like a batch script would, and the "application" is a listener started in cn0.
Target: p95 <= 1 s. Needs root and a running minicluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bwvisu_cli.servers import etcd_command, free_port, nats_command, wait_listening
from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats
from bwvisu_common.keyhole import keyhole_block
from bwvisu_common.projections import AVAILABLE
from bwvisu_common.projector import LiveJobs
from bwvisu_common.settings import Settings, load_settings

CLUSTER_CONFIG = Path("/var/lib/bwvisu-minicluster/bwvisu.json")
BRIDGE_IP = "10.200.0.1"


@dataclass
class Stack:
    """Servers and services for forwarding tests on the minicluster."""

    workdir: Path
    config_path: Path
    settings: Settings
    procs: dict[str, subprocess.Popen[bytes]]

    def agent_argv(self, gateway: str) -> list[str]:
        return ["ip", "netns", "exec", gateway, sys.executable, "-m", "gateway_agent",
                "--config", str(self.config_path), "--gateway", gateway]

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        env = dict(os.environ, BWVISU_LOG_LEVEL=os.environ.get("BWVISU_LOG_LEVEL", "INFO"))
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self.procs[name]

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def keyhole_in(self, netns: str, job_id: str, token: str, count: int, nodelist: str,
                   after: str = "env | grep ^KEYHOLE_ | sort") -> subprocess.CompletedProcess[str]:
        """The expanded KEYHOLE-REQUEST-PORTS block, run by bash inside `netns` as a job would."""
        block = keyhole_block(count, job_id=job_id, token=token, servers=self.settings.keyholed_servers,
                              hostname_suffix=self.settings.forwarding_hostname_suffix)
        env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_NODELIST": nodelist, "SLURMD_NODENAME": netns}
        return subprocess.run(["ip", "netns", "exec", netns, "/bin/bash", "-c", f"{block}\n{after}"],
                              capture_output=True, text=True, env=env, timeout=120)


@contextmanager
def forwarding_stack(cluster_config: Path = CLUSTER_CONFIG) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="bwvisu-fwd-"))
    nats_port, etcd_port, peer, keyhole_port = (free_port(BRIDGE_IP) for _ in range(4))
    config = json.loads(cluster_config.read_text())
    config.update({
        "nats-servers": [f"nats://{BRIDGE_IP}:{nats_port}"], "etcd-servers": [f"{BRIDGE_IP}:{etcd_port}"],
        "keyholed-servers": [f"http://{BRIDGE_IP}:{keyhole_port}"],
        "keyhole-api": {"host": BRIDGE_IP, "port": keyhole_port}, "state-dir": str(workdir),
    })
    for gw in config["gateway-nodes"]:
        gw["netns"] = gw["name"]
    config_path = workdir / "bwvisu.json"
    config_path.write_text(json.dumps(config, indent=2))
    stack = Stack(workdir, config_path, load_settings(config_path), {})
    try:
        nats = stack.start("nats", nats_command(BRIDGE_IP, nats_port, workdir / "nats"))
        wait_listening(BRIDGE_IP, nats_port, "nats", alive=lambda: nats.poll() is None)
        etcd = stack.start("etcd", etcd_command(BRIDGE_IP, etcd_port, peer, workdir / "etcd"))
        wait_listening(BRIDGE_IP, etcd_port, "etcd", alive=lambda: etcd.poll() is None)
        api = stack.start("keyhole-api", [sys.executable, "-m", "keyhole_api", "--config", str(config_path)])
        for gw in stack.settings.gateway_nodes:
            stack.start(f"agent-{gw.label}", stack.agent_argv(gw.label))
        wait_listening(BRIDGE_IP, keyhole_port, "keyhole-api", alive=lambda: api.poll() is None)
        yield stack
    finally:
        for proc in reversed(stack.procs.values()):
            proc.terminate()
        for proc in stack.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@asynccontextmanager
async def clients(stack: Stack) -> AsyncIterator[tuple[JetStreamEventStore, EtcdStateStore, LiveJobs]]:
    """The event store, state store and a followed read model of the stack."""
    async with AsyncExitStack() as exits:
        nc = await connect_nats(stack.settings.nats_servers, "forwarding-tests")
        exits.push_async_callback(nc.drain)
        events = JetStreamEventStore(nc)
        await events.ensure_stream()
        host, port = stack.settings.etcd_servers[0].split(":")
        state = await EtcdStateStore.connect(host, int(port))
        exits.push_async_callback(state.close)
        jobs = LiveJobs(events, state)
        caught_up = asyncio.Event()
        task = asyncio.create_task(jobs.run(caught_up))

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        exits.push_async_callback(stop)
        await caught_up.wait()
        yield events, state, jobs


async def running_job(events: JetStreamEventStore, state: EtcdStateStore,
                      nodes: list[str]) -> tuple[str, str]:
    """A job the log shows running on `nodes`, with its token stored: (job id, token)."""
    job_id, token = ev.new_job_id(), secrets.token_hex(32)
    await events.append([ev.JobSubmitted(job_id=job_id, uid="alice", template_name="bench"),
                         ev.JobStarted(job_id=job_id, nodes=nodes)])
    await state.put_secret(f"token/{job_id}", token.encode(), ttl=600)
    return job_id, token


def exports(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if line.startswith("KEYHOLE_"))


async def wait_agents(stack: Stack, timeout: float = 30) -> None:
    import httpx

    url = stack.settings.keyholed_servers[0] + "/healthz"
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                alive = (await http.get(url)).json()["gateways-alive"]
                if len(alive) == len(stack.settings.gateway_nodes):
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"gateway agents not alive; logs in {stack.workdir}")


async def measure(stack: Stack, n: int) -> list[float]:
    await wait_agents(stack)
    latencies = []
    async with clients(stack) as (events, state, jobs):
        for _ in range(n):
            job_id, token = await running_job(events, state, ["cn0"])
            proc = await asyncio.to_thread(stack.keyhole_in, "cn0", job_id, token, 1, "cn0")
            port = int(exports(proc.stdout)["KEYHOLE_PORT0"])
            # The application starts listening now; the clock runs until the job is available.
            listener = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", "cn0", "nc", "-lk", "-p", str(port),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.perf_counter()
            view = await jobs.wait_for(job_id, lambda j: j.state == AVAILABLE, 10)
            latencies.append(time.perf_counter() - t0 if view else float("inf"))
            listener.kill()
            await listener.wait()
            await events.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED", exit_code=0)])
    return latencies


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with forwarding_stack() as stack:
        lat = sorted(asyncio.run(measure(stack, n)))
    p50 = statistics.median(lat)
    p95 = lat[min(len(lat) - 1, int(round(0.95 * len(lat))) - 1)]
    print(f"app listening -> available, {n} jobs")
    print(f"  p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {lat[-1] * 1000:7.1f} ms")
    print(f"  p95 / 1 s target: {p95:.2f}")


if __name__ == "__main__":
    main()
