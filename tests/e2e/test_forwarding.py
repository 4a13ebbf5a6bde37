"""Forwarding through the whole system on the minicluster (`bwvisu up`, real Slurm, gateways gw0/gw1).

Jobs are submitted, read and cancelled through runner-api over HTTP; their batch scripts run
the expanded keyhole block, keyhole-api assigns ports and the system's gateway agents install
the rules inside the gateways' namespaces. Only the refusal test talks to keyhole-api itself,
signing with the keyhole client's own function and the job's token.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bwvisu_cli.servers import listening
from bwvisu_cli.testbed import runner_api_client_args
from bwvisu_common import events as ev
from bwvisu_common.keyhole_client import (
    PATH_TEMPLATE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    expand_hostlist,
    request_body,
    sign,
)
from tests import conditions
from tests.e2e.conftest import BwvisuSystem, Minicluster

pytestmark = pytest.mark.timeout(600)

Job = dict[str, Any]
CHAINS = ("BWVISU-DNAT", "BWVISU-SNAT")


@pytest.fixture
async def api(bwvisu_system: BwvisuSystem) -> AsyncIterator[httpx.AsyncClient]:
    """runner-api as the web frontend calls it: basic auth as `bwvisu-web`."""
    async with httpx.AsyncClient(**runner_api_client_args(bwvisu_system.settings), timeout=90) as client:
        yield client


# --- helpers ---------------------------------------------------------------------------------


async def submit(api: httpx.AsyncClient, template: str, **variables: str) -> str:
    r = await api.post("/jobs", json={"uid": "alice", "template-name": template, "variables": variables})
    assert r.status_code == 200, r.text
    return str(r.json()["job-id"])


async def wait_job(api: httpx.AsyncClient, job_id: str, done: Callable[[Job], bool],
                   timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job: Job = (await api.get(f"/jobs/{job_id}")).json()
        if done(job):
            return job
        if time.monotonic() > deadline:
            log = (await api.get(f"/jobs/{job_id}/log")).json().get("log", "")
            raise AssertionError(f"job {job_id} stuck: {job}\njob log:\n{log}")
        await asyncio.sleep(0.2)


def available(job: Job) -> bool:
    assert job["state"] != "finished", f"job ended before it was available: {job}"
    return job["state"] == "available"


def finished(job: Job) -> bool:
    return job["state"] == "finished"


async def cancel(api: httpx.AsyncClient, job_id: str) -> None:
    r = await api.delete(f"/jobs/{job_id}")
    assert r.status_code == 200 and r.json() == {"response": "job cancelled"}, r.text


def rules(minicluster: Minicluster, gateway: str) -> list[str]:
    """Our chains' rules on a gateway (and their buckets', `BWVISU-DNAT-20032`), as iptables prints them."""
    proc = minicluster.in_host(gateway, ["iptables-save", "-t", "nat"])
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line.startswith(tuple(f"-A {c}" for c in CHAINS))]


def rules_of(minicluster: Minicluster, *job_ids: str) -> dict[str, list[str]]:
    """Per gateway, the rules tagged with any of these jobs (`<system's job tag>:<job id>`)."""
    tags = tuple(f':{j}"' for j in job_ids)
    return {gw: [r for r in rules(minicluster, gw) if any(t in r for t in tags)]
            for gw in minicluster.gateway_nodes}


async def held_by(system: BwvisuSystem, *job_ids: str) -> list[str]:
    """Reservations (ports, node ports, grants) held by these jobs."""
    async with system.stores() as (_, state):
        return sorted(k for k, owner in (await state.reservations()).items() if owner in job_ids)


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 30) -> None:
    """conditions.eventually at the pace of a cluster: seconds, not milliseconds."""
    await conditions.eventually(check, what, timeout, interval=0.3)


async def assert_cleaned_up(system: BwvisuSystem, minicluster: Minicluster, *job_ids: str) -> None:
    """No rule on any gateway and no reservation outlives these (ended) jobs."""
    await eventually(lambda: not any(rules_of(minicluster, *job_ids).values()), "rules removed")

    async def released() -> bool:
        return await held_by(system, *job_ids) == []

    await eventually(released, "reservations released")


async def secret_of(api: httpx.AsyncClient, job_id: str, uid: str = "alice") -> str:
    """The job's session secret, as runner-api tells the job's owner."""
    job = (await api.get(f"/jobs/{job_id}", params={"uid": uid})).json()
    return str(job["connect"]["secret"])


def greeting(host: str, port: int, secret: str, timeout: float = 5) -> str:
    """The first line a port-echo job sends once given its secret, and proof that it echoes."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        f = conn.makefile("rwb")
        f.write(secret.encode() + b"\n")
        f.flush()
        line = f.readline().decode().strip()
        f.write(b"ping\n")
        f.flush()
        assert f.readline() == b"ping\n"
        return line


async def job_nodes(system: BwvisuSystem, job_id: str) -> list[str]:
    async with system.events() as events:
        started = [e for _, e in await events.read_job(job_id) if isinstance(e, ev.JobStarted)]
    assert started, f"job {job_id} has not started"
    return list(started[-1].nodes)


def gateway_of(system: BwvisuSystem, service: Job) -> str:
    (name,) = [g.label for g in system.settings.gateway_nodes if g.external_ip == service["external-ip"]]
    return name


# --- tests -----------------------------------------------------------------------------------


def test_hostlist_matches_scontrol(minicluster: Minicluster) -> None:
    for spec in ("cn[0-1]", "cn0,cn1", "cn[0-1],gpu[01-03,7]", "n[008-011]"):
        out = subprocess.run(["scontrol", "show", "hostnames", spec], capture_output=True, text=True,
                             check=True).stdout
        assert expand_hostlist(spec) == out.split(), spec


async def test_xpra_desktop_is_reachable_through_its_gateway_and_cleaned_up_on_cancel(
    api: httpx.AsyncClient, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    job_id = await submit(api, "xpra-desktop", runtime="5")
    try:
        job = await wait_job(api, job_id, available, timeout=90)
        (service,) = job["services"]
        url = f"http://{service['external-ip']}:{service['external-port']}/index.html"
        page = await api.get(url, auth=None, timeout=10)
        assert page.status_code == 200, page.text[:500]
        assert "<title>xpra websockets client</title>" in page.text and "js/Client.js" in page.text
        (node,) = await job_nodes(bwvisu_system, job_id)
        gw = gateway_of(bwvisu_system, service)
        dnat = [r for r in rules_of(minicluster, job_id)[gw] if "-j DNAT" in r]
        assert len(dnat) == 1 and f"--dport {service['external-port']} " in dnat[0]
        assert dnat[0].endswith(f"--to-destination {minicluster.hosts[node]}:{service['internal-port']}")
        assert len(rules_of(minicluster, job_id)[gw]) == 2  # the DNAT and its MASQUERADE
        held = await held_by(bwvisu_system, job_id)
        assert f"ports/{gw}/{service['external-port']}" in held
        assert f"nodeports/{node}/{service['internal-port']}" in held
    finally:
        await cancel(api, job_id)
    await wait_job(api, job_id, finished)
    await assert_cleaned_up(bwvisu_system, minicluster, job_id)
    assert (await api.get(f"/jobs/{job_id}")).json()["services"] == []


async def test_two_node_job_gets_one_internal_port_free_on_both_nodes(
    api: httpx.AsyncClient, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    job_id = await submit(api, "port-echo", nodes="2", seconds="120", runtime="3")
    try:
        job = await wait_job(api, job_id, available, timeout=60)
        (service,) = job["services"]
        port = service["internal-port"]
        nodes = await job_nodes(bwvisu_system, job_id)
        assert sorted(nodes) == sorted(minicluster.compute_nodes)
        # The port was checked free and reserved on both nodes, so both could bind it.
        held = await held_by(bwvisu_system, job_id)
        assert {f"nodeports/{n}/{port}" for n in nodes} <= set(held)
        secret = await secret_of(api, job_id)
        for node in nodes:
            await eventually(lambda n=node: listening(minicluster.hosts[n], port), f"{node}:{port} listens")
            assert greeting(minicluster.hosts[node], port, secret) == f"port-echo {job_id} {node} {port}"
        # The gateway forwards to the first node (the one running the batch script).
        through = greeting(service["external-ip"], service["external-port"], secret)
        assert through == f"port-echo {job_id} {nodes[0]} {port}"
    finally:
        await cancel(api, job_id)
    await wait_job(api, job_id, finished)
    await assert_cleaned_up(bwvisu_system, minicluster, job_id)


async def test_twenty_jobs_spread_over_both_gateways_then_everything_is_released(
    api: httpx.AsyncClient, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    # The cluster has 16 cores: most jobs run at once, the rest start as the first ones end.
    job_ids = await asyncio.gather(*(submit(api, "port-echo", seconds="20", runtime="2")
                                     for _ in range(20)))
    seen: dict[str, tuple[str, Job]] = {}  # job -> (its node, its service), once it answered
    deadline = time.monotonic() + 150
    try:
        while len(seen) < len(job_ids):
            assert time.monotonic() < deadline, f"only {len(seen)} of 20 jobs became available"
            answers = await asyncio.gather(*(api.get(f"/jobs/{j}") for j in job_ids))
            current = {j: r.json() for j, r in zip(job_ids, answers, strict=True)}
            for job_id, job in current.items():
                if job["state"] == "available" and job_id not in seen:
                    service = job["services"][0]
                    secret = await secret_of(api, job_id)
                    line = await asyncio.to_thread(greeting, service["external-ip"], service["external-port"],
                                                   secret)
                    _, who, node, port = line.split()  # the job's own server answers through its gateway
                    assert (who, int(port)) == (job_id, service["internal-port"]), line
                    seen[job_id] = node, service
                assert job_id in seen or job["state"] != "finished", f"ended unseen: {job}"
            # Jobs available at the same moment never share a gateway port, nor a port on a node.
            live = [seen[j] for j, job in current.items() if job["state"] == "available" and j in seen]
            external = {(s["external-ip"], s["external-port"]) for _, s in live}
            internal = {(node, s["internal-port"]) for node, s in live}
            assert len(external) == len(internal) == len(live), live
            await asyncio.sleep(0.3)
        gateways = {gateway_of(bwvisu_system, s) for _, s in seen.values()}
        assert gateways == set(minicluster.gateway_nodes), seen
    finally:
        for job_id in job_ids:
            if (await api.get(f"/jobs/{job_id}")).json()["state"] != "finished":
                await api.delete(f"/jobs/{job_id}")  # 404 if it ended meanwhile
    for job_id in job_ids:
        await wait_job(api, job_id, finished)
    await assert_cleaned_up(bwvisu_system, minicluster, *job_ids)


async def test_refusals_install_no_rule(
    api: httpx.AsyncClient, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    # A job without ports of its own: this test is its keyhole client.
    job_id = await submit(api, "sleep", seconds="120", runtime="3")
    try:
        await wait_job(api, job_id, lambda j: j["state"] == "running")
        nodes = await job_nodes(bwvisu_system, job_id)
        stranger = next(n for n in minicluster.compute_nodes if n not in nodes)
        async with bwvisu_system.stores() as (_, state):
            token = await state.get_secret(f"token/{job_id}")
        assert token is not None
        path = PATH_TEMPLATE.format(job_id=job_id)
        sent: list[tuple[bytes, dict[str, str]]] = []

        async def post(count: int = 1, nodes: list[str] = nodes, key: bytes = token, skew: int = 0,
                       replay: tuple[bytes, dict[str, str]] | None = None) -> httpx.Response:
            if replay is None:
                body, ts = request_body(count, nodes), str(int(time.time()) + skew)
                replay = body, {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(key, "POST", path, ts, body)}
            sent.append(replay)
            server = bwvisu_system.settings.keyholed_servers[0]
            return await api.post(server + path, content=replay[0], headers=replay[1], auth=None,
                                  timeout=60)

        assert (await post(key=b"f" * 64)).status_code == 401  # forged signature
        assert (await post(skew=-600)).status_code == 401  # stale timestamp
        max_ports = bwvisu_system.settings.keyholed_max_forwarders_per_job
        assert (await post(count=max_ports + 1)).status_code == 400
        assert (await post(nodes=[*nodes, stranger])).status_code == 403
        assert (await post(nodes=["login0"])).status_code == 403
        bad_name = await post(nodes=["cn0\nINJECTED"])
        assert bad_name.status_code == 400 and "INJECTED" not in bad_name.text
        assert rules_of(minicluster, job_id) == {gw: [] for gw in minicluster.gateway_nodes}
        assert await held_by(bwvisu_system, job_id) == []
        granted = await post()
        assert granted.status_code == 200, granted.text
        # The answer may have been lost: the same request again, or a new one, gets the same ports.
        replayed = await post(replay=sent[-1])
        assert replayed.status_code == 200 and replayed.json() == granted.json()
        second = await post()
        assert second.status_code == 200 and second.json() == granted.json()
        assert sum(len(r) for r in rules_of(minicluster, job_id).values()) == 2  # the one grant
        async with bwvisu_system.events() as events:
            kinds = [type(e).__name__ for _, e in await events.read_job(job_id)]
        # Only the job's own (signed) requests are recorded; the forged and the stale are not.
        assert kinds.count("PortsRefused") == 4 and kinds.count("PortsAssigned") == 1, kinds
        assert "INJECTED" not in bwvisu_system.service_log("keyhole-api")
    finally:
        await cancel(api, job_id)
    await wait_job(api, job_id, finished)
    await assert_cleaned_up(bwvisu_system, minicluster, job_id)


async def test_a_flood_of_unauthenticated_requests_adds_nothing_and_the_job_still_starts(
    api: httpx.AsyncClient, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    server = bwvisu_system.settings.keyholed_servers[0]
    job_id = await submit(api, "port-echo", seconds="120", runtime="3")
    path = PATH_TEMPLATE.format(job_id=job_id)
    sent = 0

    async def flood(stop: asyncio.Event) -> None:
        nonlocal sent
        async with httpx.AsyncClient(timeout=10) as client:
            while not stop.is_set():
                body, now = request_body(1, ["cn0"]), str(int(time.time()))
                forged = {TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign(b"g" * 64, "POST", path, now, body)}
                for content, headers in ((body, {}), (body, forged), (b"x" * 10_000, forged),
                                         (body, {TIMESTAMP_HEADER: b"\xb2", SIGNATURE_HEADER: "0"})):
                    answer = await client.post(server + path, content=content, headers=headers)
                    assert answer.status_code in (401, 404, 413), answer.text
                    sent += 1
                await asyncio.sleep(0.01)  # a flood, but the machine is shared

    stop = asyncio.Event()
    flooding = asyncio.create_task(flood(stop))
    try:
        job = await wait_job(api, job_id, available, timeout=90)  # its own request got through
        assert not flooding.done() or flooding.result() is None
        assert sent >= 20
        (service,) = job["services"]
        secret = await secret_of(api, job_id)  # before the cancel: the secret ends with the job
        greeted = greeting(service["external-ip"], service["external-port"], secret)
        assert greeted.startswith(f"port-echo {job_id} ")
    finally:
        stop.set()
        await flooding
        await cancel(api, job_id)
    async with bwvisu_system.events() as events:
        kinds = [type(e).__name__ for _, e in await events.read_job(job_id)]
    assert "PortsRefused" not in kinds and kinds.count("PortsRequested") == 1, kinds
    async with httpx.AsyncClient(timeout=10) as client:
        counted = (await client.get(server + "/healthz")).json()["refused-unauthenticated"]
    assert sum(counted.values()) >= sent - 4  # a round may straddle the counting
    await wait_job(api, job_id, finished)
    await assert_cleaned_up(bwvisu_system, minicluster, job_id)


FOREIGN = ["-A", "BWVISU-DNAT", "-p", "tcp", "--dport", "19999", "-m", "comment", "--comment",
           "othersystem:job1", "-j", "DNAT", "--to-destination", "10.200.0.99:1"]


def agent_pid(system: BwvisuSystem, gateway: str, other_than: int | None = None,
              timeout: float = 60) -> int:
    """The pid of the system's gateway agent for `gateway` (a new one, if `other_than` is given)."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in system.pids("gateway_agent"):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if pid != other_than and gateway.encode() in argv:
                return pid
        assert time.monotonic() < deadline, f"no gateway agent for {gateway}"
        time.sleep(0.2)


async def kill_and_restart(system: BwvisuSystem, minicluster: Minicluster, api: httpx.AsyncClient,
                           gateway: str, keep: str, gone: str) -> None:
    """kill -9 the gateway's agent; meanwhile a rule of `keep` is deleted and `gone` ends."""
    old = agent_pid(system, gateway)
    # Stopped first, so that the supervisor cannot restart it before the changes below.
    os.kill(old, signal.SIGSTOP)
    try:
        dnat = next(r for r in rules_of(minicluster, keep)[gateway] if "-j DNAT" in r)
        deleted = minicluster.in_host(gateway, ["iptables", "-w", "-t", "nat",
                                                *shlex.split(dnat.replace("-A ", "-D ", 1))])
        assert deleted.returncode == 0, deleted.stderr
        await cancel(api, gone)
        await wait_job(api, gone, finished)
        assert len(rules_of(minicluster, gone)[gateway]) == 2  # nobody removed them yet
    finally:
        os.kill(old, signal.SIGKILL)
    assert await asyncio.to_thread(agent_pid, system, gateway, old) != old  # the supervisor restarted it
    await eventually(lambda: len(rules_of(minicluster, keep)[gateway]) == 2, "the deleted rule is back")


async def test_killed_agent_comes_back_and_reconciles(
    api: httpx.AsyncClient, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    job_ids = await asyncio.gather(*(submit(api, "port-echo", seconds="180", runtime="4") for _ in range(4)))
    try:
        jobs = await asyncio.gather(*(wait_job(api, j, available) for j in job_ids))
        by_gateway: dict[str, list[tuple[str, Job]]] = {}
        for job_id, job in zip(job_ids, jobs, strict=True):
            service = job["services"][0]
            by_gateway.setdefault(gateway_of(bwvisu_system, service), []).append((job_id, service))
        victim = max(by_gateway, key=lambda gw: len(by_gateway[gw]))  # 4 jobs, 2 gateways: >= 2
        (keep, kept), (gone, _) = by_gateway[victim][:2]
        # Another bwvisu's forward on the same gateway: not this system's to reconcile.
        assert minicluster.in_host(victim, ["iptables", "-w", "-t", "nat", *FOREIGN]).returncode == 0
        try:
            await kill_and_restart(bwvisu_system, minicluster, api, victim, keep, gone)
            line = await asyncio.to_thread(greeting, kept["external-ip"], kept["external-port"],
                                           await secret_of(api, keep))
            assert line.startswith(f"port-echo {keep} ")
            await assert_cleaned_up(bwvisu_system, minicluster, gone)
            assert any('"othersystem:job1"' in rule for rule in rules(minicluster, victim))
        finally:
            minicluster.in_host(victim, ["iptables", "-w", "-t", "nat", "-D", *FOREIGN[1:]])
    finally:
        for job_id in job_ids:
            await api.delete(f"/jobs/{job_id}")  # 404 for the one cancelled above
    for job_id in job_ids:
        await wait_job(api, job_id, finished)
    await assert_cleaned_up(bwvisu_system, minicluster, *job_ids)
