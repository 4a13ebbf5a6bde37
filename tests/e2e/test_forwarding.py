"""Forwarding on the minicluster's real gateways: keyhole client, keyhole-api, agents in gw0/gw1.

Runs its own servers and services (bench.ready.forwarding_stack) next to the cluster. The job
lifecycle is driven at the event level (JobStarted appended here); the Xpra test submits a
real Slurm job whose script runs the expanded keyhole block.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.ready import Stack, clients, exports, forwarding_stack, running_job, wait_agents
from bwvisu_common import events as ev
from bwvisu_common.keyhole import keyhole_block
from bwvisu_common.keyhole_client import (
    PATH_TEMPLATE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    expand_hostlist,
    request_body,
    sign,
)
from bwvisu_common.projections import AVAILABLE
from tests.e2e.conftest import Minicluster

GATEWAYS = {"gw0": "10.200.0.30", "gw1": "10.200.0.31"}


@pytest.fixture(scope="module")
def stack(minicluster: Minicluster) -> Iterator[Stack]:
    with forwarding_stack(minicluster.config_path) as s:
        yield s


def rules_of(job_id: str) -> dict[str, list[str]]:
    found = {}
    for gw in GATEWAYS:
        out = subprocess.run(["ip", "netns", "exec", gw, "iptables-save", "-t", "nat"], capture_output=True,
                             text=True, check=True).stdout
        found[gw] = [line for line in out.splitlines() if f"bwvisu:{job_id}" in line]
    return found


def test_hostlist_matches_scontrol(minicluster: Minicluster) -> None:
    for spec in ("cn[0-1]", "cn0,cn1", "cn[0-1],gpu[01-03,7]", "n[008-011]"):
        out = subprocess.run(["scontrol", "show", "hostnames", spec], capture_output=True, text=True,
                             check=True).stdout
        assert expand_hostlist(spec) == out.split(), spec


async def test_xpra_job_is_reachable_through_the_gateway_and_cleaned_up(
        stack: Stack, minicluster: Minicluster) -> None:
    await wait_agents(stack)
    async with clients(stack) as (events, state, jobs):
        job_id, token = await running_job(events, state, ["cn0"])
        block = keyhole_block(1, job_id=job_id, token=token, servers=stack.settings.keyholed_servers,
                              hostname_suffix="")
        log = minicluster.home("alice") / f"keyhole-{job_id}.out"
        script = "\n".join([
            "#!/bin/bash", "#SBATCH -w cn0", "#SBATCH -t 5", f"#SBATCH -o {log}", "set -eu", block,
            'export XDG_RUNTIME_DIR="/tmp/kh-xdg-$SLURM_JOB_ID"; mkdir -p -m 700 "$XDG_RUNTIME_DIR"',
            'exec xpra start ":$((100 + KEYHOLE_PORT0 % 30000))" --bind-tcp="0.0.0.0:$KEYHOLE_PORT0" '
            "--html=on --start-child=xterm --daemon=no --mdns=no --pulseaudio=no --notifications=no "
            "--webcam=no --printing=no --speaker=off --microphone=off --dbus-launch= --systemd-run=no "
            "--exit-with-children=yes",
        ])
        submitted = minicluster.ssh("login0", ["sudo", "-n", "-u", "alice", "sbatch", "--parsable"],
                                    input=script)
        assert submitted.returncode == 0, submitted.stderr
        slurm_id = submitted.stdout.strip().split(";")[0]
        try:
            view = await jobs.wait_for(job_id, lambda j: j.state == AVAILABLE, 60)
            assert view is not None, f"not available; job log:\n{log.read_text() if log.exists() else ''}"
            (service,) = view.services
            url = f"http://{GATEWAYS[service.gateway]}:{service.external_port}/"
            async with httpx.AsyncClient() as http:
                page = await http.get(url, timeout=10)
            assert page.status_code == 200 and "xpra" in page.text.lower()
            assert len(rules_of(job_id)[service.gateway]) == 2
        finally:
            minicluster.ssh("login0", ["sudo", "-n", "-u", "alice", "scancel", slurm_id])
        await events.append([ev.JobEnded(job_id=job_id, slurm_state="CANCELLED")])
        assert await jobs.wait_for(job_id, lambda j: not j.services, 10) is not None
        await _eventually(lambda: rules_of(job_id) == {"gw0": [], "gw1": []})
        await _eventually_async(lambda: _held_by(state, job_id), expect=[])


async def _held_by(state: object, job_id: str) -> list[str]:
    held = await state.reservations()  # type: ignore[attr-defined]
    return [k for k, owner in held.items() if owner == job_id]


async def _eventually(check, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def _eventually_async(get, expect: object, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (value := await get()) != expect:
        assert time.monotonic() < deadline, f"still {value!r}"
        await asyncio.sleep(0.2)


async def test_refusals_install_no_rule(stack: Stack) -> None:
    await wait_agents(stack)
    server = stack.settings.keyholed_servers[0]
    async with clients(stack) as (events, state, _), httpx.AsyncClient(base_url=server) as http:
        job_id, token = await running_job(events, state, ["cn0"])
        path = PATH_TEMPLATE.format(job_id=job_id)

        async def post(count: int = 1, nodes: tuple[str, ...] = ("cn0",), key: str = token,
                       skew: int = 0, replay: tuple[bytes, dict[str, str]] | None = None) -> httpx.Response:
            body, headers = replay or (request_body(count, list(nodes)), {})
            if not replay:
                ts = str(int(time.time()) + skew)
                headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(key.encode(), "POST", path, ts, body)}
            post.last = (body, headers)  # type: ignore[attr-defined]
            return await http.post(path, content=body, headers=headers, timeout=60)

        assert (await post(key="f" * 64)).status_code == 401
        assert (await post(skew=-600)).status_code == 401
        assert (await post(count=5)).status_code == 400
        assert (await post(nodes=("cn0", "cn1"))).status_code == 403
        assert (await post(nodes=("login0",))).status_code == 403
        assert rules_of(job_id) == {"gw0": [], "gw1": []}
        granted = await post()
        assert granted.status_code == 200, granted.text
        assert (await post(replay=post.last)).status_code == 409  # type: ignore[attr-defined]
        second = await post()
        assert second.status_code == 409 and "already granted" in second.json()["detail"]
        assert sum(len(v) for v in rules_of(job_id).values()) == 2  # only the one grant's rules
        kinds = [type(e).__name__ for _, e in await events.read_job(job_id)]
        assert kinds.count("PortsRefused") == 7 and kinds.count("PortsAssigned") == 1
        await events.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED")])
        await _eventually(lambda: rules_of(job_id) == {"gw0": [], "gw1": []})


async def test_twenty_jobs_spread_over_both_gateways_and_ports_are_reused(stack: Stack) -> None:
    await wait_agents(stack)
    async with clients(stack) as (events, state, _):
        made = [await running_job(events, state, ["cn0", "cn1"]) for _ in range(20)]
        runs = await asyncio.gather(*(asyncio.to_thread(stack.keyhole_in, "cn0", j, t, 1, "cn[0-1]")
                                      for j, t in made))
        got = [exports(r.stdout) for r in runs]
        assert all(g for g in got), [r.stderr for r in runs if not exports(r.stdout)]
        assert {g["KEYHOLE_GATEWAY0"] for g in got} == set(GATEWAYS.values())
        pairs = {(g["KEYHOLE_GATEWAY0"], g["KEYHOLE_EXTERNAL_PORT0"]) for g in got}
        assert len(pairs) == 20 and len({g["KEYHOLE_PORT0"] for g in got}) == 20
        for job_id, _ in made:
            await events.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED")])
        await _eventually(lambda: all(rules_of(j) == {"gw0": [], "gw1": []} for j, _ in made), 20)
        await _eventually_async(lambda: state.reservations(), expect={}, timeout=20)


async def test_agent_killed_rule_deleted_job_ended_then_restart_reconciles(stack: Stack) -> None:
    await wait_agents(stack)
    async with clients(stack) as (events, state, jobs):
        made = [await running_job(events, state, ["cn0"]) for _ in range(4)]
        runs = [await asyncio.to_thread(stack.keyhole_in, "cn0", j, t, 1, "cn0") for j, t in made]
        gws = {j: exports(r.stdout)["KEYHOLE_GATEWAY0"] for (j, _), r in zip(made, runs, strict=True)}
        victim_gw = "gw0"
        on_victim = [j for j, ip in gws.items() if ip == GATEWAYS[victim_gw]]
        assert len(on_victim) >= 2, gws  # least loaded: both gateways get two
        keep, gone = on_victim[0], on_victim[1]
        agent = stack.procs[f"agent-{victim_gw}"]
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        deleted = rules_of(keep)[victim_gw][0].replace("-A ", "-D ", 1)
        subprocess.run(["ip", "netns", "exec", victim_gw, "iptables", "-w", "-t", "nat",  # noqa: ASYNC221
                        *shlex.split(deleted)], check=True)
        await events.append([ev.JobEnded(job_id=gone, slurm_state="COMPLETED")])
        assert len(rules_of(keep)[victim_gw]) == 1 and len(rules_of(gone)[victim_gw]) == 2
        stack.start(f"agent-{victim_gw}", stack.agent_argv(victim_gw))
        await _eventually(lambda: len(rules_of(keep)[victim_gw]) == 2 and not rules_of(gone)[victim_gw], 20)
        await _eventually_async(lambda: _held_by(state, gone), expect=[])
        for job_id, _ in made:
            await events.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED")])
        await _eventually(lambda: all(rules_of(j) == {"gw0": [], "gw1": []} for j, _ in made), 20)
