"""A gateway whose host is gone (its link down): the forwards of a job available through it move
to the other gateway within seconds, the job answers there with its own id, and the gateway,
back again, removes its stale rules without touching the new gateway's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args
from bwvisu_common.heartbeats import HEARTBEAT_TIMEOUT
from tests.e2e.conftest import BwvisuSystem, Minicluster
from tests.e2e.test_forwarding import (
    Job,
    assert_cleaned_up,
    available,
    cancel,
    eventually,
    finished,
    gateway_of,
    greeting,
    held_by,
    job_nodes,
    rules_of,
    secret_of,
    submit,
    wait_job,
)

pytestmark = pytest.mark.timeout(600)

MOVE_WITHIN = 10.0  # after the gateway counts as dead (HEARTBEAT_TIMEOUT), plus the probes' time


@pytest.fixture
async def api(bwvisu_system: BwvisuSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(**runner_api_client_args(bwvisu_system.settings), timeout=90) as client:
        yield client


def moved_to(other: str, system: BwvisuSystem):  # -> Callable[[Job], bool]
    def check(job: Job) -> bool:
        assert job["state"] != "finished", f"job ended while its forwards moved: {job}"
        return (job["state"] == "available" and len(job["services"]) == 1
                and gateway_of(system, job["services"][0]) == other)
    return check


async def answers_through(service: Job, secret: str) -> str:
    return await asyncio.to_thread(greeting, service["external-ip"], service["external-port"], secret, 2)


async def test_a_dead_gateways_job_moves_to_the_live_one_and_its_stale_rules_go_when_it_returns(
    api: httpx.AsyncClient, bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    job_id = await submit(api, "port-echo", seconds="300", runtime="10")
    try:
        job = await wait_job(api, job_id, available, timeout=90)
        (before,) = job["services"]
        dead = gateway_of(bwvisu_system, before)
        (other,) = [g for g in minicluster.gateway_nodes if g != dead]
        (node,) = await job_nodes(bwvisu_system, job_id)
        secret = await secret_of(api, job_id)
        own_id = f"port-echo {job_id} {node} {before['internal-port']}"
        assert await answers_through(before, secret) == own_id
        with minicluster.link_down(dead):
            t0 = time.monotonic()
            job = await wait_job(api, job_id, moved_to(other, bwvisu_system),
                                 timeout=HEARTBEAT_TIMEOUT + MOVE_WITHIN)
            (after,) = job["services"]
            assert await answers_through(after, secret) == own_id
            took = time.monotonic() - t0
            print(f"forwards moved from {dead} to {other} and answered in {took:.1f} s")
            assert after["internal-port"] == before["internal-port"]  # the application did not move
            assert (await secret_of(api, job_id)) == secret
            # The dead gateway's ports are given back; the new ones are the job's.
            held = await held_by(bwvisu_system, job_id)
            assert not [k for k in held if k.startswith(f"ports/{dead}/")], held
            assert f"ports/{other}/{after['external-port']}" in held
        # Back: it takes out its stale rules (and its late word changes nothing of the job's).
        await eventually(lambda: rules_of(minicluster, job_id)[dead] == [], f"{dead}'s stale rules removed",
                         timeout=90)
        assert len(rules_of(minicluster, job_id)[other]) == 2  # the DNAT and its MASQUERADE
        job = (await api.get(f"/jobs/{job_id}")).json()
        assert job["state"] == "available" and job["services"] == [after], job
        assert await answers_through(after, secret) == own_id
    finally:
        await cancel(api, job_id)
    await wait_job(api, job_id, finished)
    await assert_cleaned_up(bwvisu_system, minicluster, job_id)
