"""Command nodes going away: failover to the other one, 'unavailable' when none answers, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from bwvisu_common import events as ev
from tests.e2e.conftest import BwvisuSystem, Minicluster
from tests.e2e.test_scheduler_lifecycle import submit, wait_until

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def repair(minicluster: Minicluster) -> Iterator[None]:
    try:
        yield
    finally:
        minicluster.repair()


async def queued_or_failed(system: BwvisuSystem, job_id: str) -> ev.AnyEvent:
    log, _ = await wait_until(system, job_id, lambda v: bool(v.slurm_id) or v.state == "finished", timeout=90)
    return next(e for e in log if isinstance(e, ev.JobQueued | ev.JobSubmitFailed | ev.JobAdopted))


async def cancel(system: BwvisuSystem, job_id: str) -> None:
    async with system.events() as events:
        await events.append([ev.JobCancelRequested(job_id=job_id)])


async def test_login0_down_submits_through_login1(
    bwvisu_system: BwvisuSystem, minicluster: Minicluster, repair: None
) -> None:
    minicluster.stop_sshd("login0")
    job_ids = [await submit(bwvisu_system, seconds="1") for _ in range(3)]
    for job_id in job_ids:
        outcome = await queued_or_failed(bwvisu_system, job_id)
        assert isinstance(outcome, ev.JobQueued), outcome
        assert outcome.command_node == "login1"
    for job_id in job_ids:
        await wait_until(bwvisu_system, job_id, lambda v: v.state == "finished", timeout=90)


async def test_both_down_is_unavailable_then_recovers(
    bwvisu_system: BwvisuSystem, minicluster: Minicluster, repair: None
) -> None:
    for host in minicluster.login_nodes:
        minicluster.stop_sshd(host)
    t0 = time.monotonic()
    job_id = await submit(bwvisu_system, seconds="1")
    outcome = await queued_or_failed(bwvisu_system, job_id)
    assert isinstance(outcome, ev.JobSubmitFailed) and outcome.kind == "unavailable", outcome
    failed_after = time.monotonic() - t0
    minicluster.repair()
    deadline = time.monotonic() + 60
    while True:
        job_id = await submit(bwvisu_system, seconds="1")
        outcome = await queued_or_failed(bwvisu_system, job_id)
        if isinstance(outcome, ev.JobQueued):
            break
        assert time.monotonic() < deadline, f"no recovery: {outcome}"
        await asyncio.sleep(1)
    await wait_until(bwvisu_system, job_id, lambda v: v.state == "finished", timeout=90)
    print(f"unavailable answered after {failed_after:.1f} s")
