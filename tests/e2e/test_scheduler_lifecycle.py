"""scheduler-adapter on the minicluster's real Slurm, through the event log of a running bwvisu."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from bwvisu_common import events as ev
from bwvisu_common.read_model import fold
from tests.e2e.conftest import BwvisuSystem, Minicluster

pytestmark = pytest.mark.timeout(600)


async def submit(system: BwvisuSystem, template: str = "sleep", uid: str = "alice", **variables: str) -> str:
    job_id = ev.new_job_id()
    async with system.events() as events:
        await events.append([ev.JobSubmitted(job_id=job_id, uid=uid, template_name=template,
                                             variables=variables)], expected_version=0)
    return job_id


async def wait_until(system: BwvisuSystem, job_id: str, done, timeout: float = 60):  # type: ignore[no-untyped-def]
    """The job's events and view once done(view) holds."""
    deadline = time.monotonic() + timeout
    async with system.events() as events:
        while True:
            log = await events.read_job(job_id)
            view = fold(list(log))
            if view is not None and done(view):
                return [e for _, e in log], view
            if time.monotonic() > deadline:
                kinds = [type(e).__name__ for _, e in log]
                raise AssertionError(f"job {job_id} stuck: {kinds}, view {view}\n"
                                     f"{system.service_log('scheduler-adapter')[-3000:]}")
            await asyncio.sleep(0.2)


def slurm_jobs_named(system: BwvisuSystem, minicluster: Minicluster, job_id: str) -> list[str]:
    name = f"{system.settings.scheduler.job_tag}-{job_id}"
    proc = minicluster.ssh("login1", ["squeue", "--noheader", "--all", "--states=all",
                                      f"--name={name}", "--format=%i %T"])
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line.strip()]


async def test_submit_start_cancel_end(bwvisu_system: BwvisuSystem, minicluster: Minicluster) -> None:
    job_id = await submit(bwvisu_system, seconds="300", runtime="10")
    log, view = await wait_until(bwvisu_system, job_id, lambda v: v.state == "running")
    queued = next(e for e in log if isinstance(e, ev.JobQueued))
    assert queued.slurm_id and queued.command_node in minicluster.login_nodes
    assert view.nodes and set(view.nodes) <= set(minicluster.compute_nodes)
    async with bwvisu_system.stores() as (events, state):
        assert await state.get_secret(f"token/{job_id}") is not None
        await events.append([ev.JobCancelRequested(job_id=job_id)])
    log, view = await wait_until(bwvisu_system, job_id, lambda v: v.state == "finished")
    ended = next(e for e in log if isinstance(e, ev.JobEnded))
    assert ended.slurm_state == "CANCELLED", view.details
    assert len(slurm_jobs_named(bwvisu_system, minicluster, job_id)) == 1
    async with bwvisu_system.stores() as (_, state):
        for _ in range(50):
            if await state.get_secret(f"token/{job_id}") is None:
                break
            await asyncio.sleep(0.1)
        assert await state.get_secret(f"token/{job_id}") is None


async def test_a_job_that_exits_by_itself_is_finished_with_its_exit_code(bwvisu_system: BwvisuSystem) -> None:
    job_id = await submit(bwvisu_system, seconds="1", exit_code="3")
    log, view = await wait_until(bwvisu_system, job_id, lambda v: v.state == "finished")
    kinds = [type(e).__name__ for e in log]
    assert kinds[:2] == ["JobSubmitted", "JobQueued"] and kinds[-1] == "JobEnded"
    ended = log[-1]
    assert isinstance(ended, ev.JobEnded) and (ended.slurm_state, ended.exit_code) == ("FAILED", 3)


async def test_sbatchs_refusal_is_the_reason(bwvisu_system: BwvisuSystem) -> None:
    job_id = await submit(bwvisu_system, seconds="1", partition="nope-partition")
    log, view = await wait_until(bwvisu_system, job_id, lambda v: v.state == "finished")
    failed = log[-1]
    assert isinstance(failed, ev.JobSubmitFailed) and failed.kind == "rejected"
    assert "partition" in failed.reason.lower()


async def test_unknown_user_and_missing_variable(
    bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    job_id = await submit(bwvisu_system, uid=minicluster.missing_user, seconds="1")
    log, _ = await wait_until(bwvisu_system, job_id, lambda v: v.state == "finished")
    assert isinstance(log[-1], ev.JobSubmitFailed) and log[-1].kind == "unknown-user"
    job_id = await submit(bwvisu_system)  # `seconds` missing
    log, _ = await wait_until(bwvisu_system, job_id, lambda v: v.state == "finished")
    assert isinstance(log[-1], ev.JobSubmitFailed) and "seconds" in log[-1].reason
    assert slurm_jobs_named(bwvisu_system, minicluster, job_id) == []


async def test_kill_9_mid_run_loses_and_duplicates_nothing(
    bwvisu_system: BwvisuSystem, minicluster: Minicluster
) -> None:
    pid = bwvisu_system.wait_pid("scheduler_adapter")
    running = await submit(bwvisu_system, seconds="4")
    await wait_until(bwvisu_system, running, lambda v: v.state == "running")
    os.kill(pid, signal.SIGKILL)
    # Submitted while it is dead, and ended while it is dead.
    waiting = [await submit(bwvisu_system, seconds="2") for _ in range(3)]
    new_pid = bwvisu_system.wait_pid("scheduler_adapter", other_than=pid)
    assert new_pid != pid
    for job_id in [running, *waiting]:
        log, view = await wait_until(bwvisu_system, job_id, lambda v: v.state == "finished", timeout=120)
        assert isinstance(log[-1], ev.JobEnded) and log[-1].slurm_state == "COMPLETED", view.details
        assert sum(isinstance(e, ev.JobQueued | ev.JobAdopted) for e in log) == 1
        assert len(slurm_jobs_named(bwvisu_system, minicluster, job_id)) == 1


async def test_check_user_asks_the_cluster(bwvisu_system: BwvisuSystem, minicluster: Minicluster) -> None:
    import msgspec

    from bwvisu_common.adapters.jetstream import connect_nats
    from bwvisu_common.connect import nats_auth
    from bwvisu_common.rpc import CHECK_USER, CheckUser, CheckUserReply

    # As runner-api, the identity that may ask.
    settings = bwvisu_system.settings
    nc = await connect_nats(settings.nats_servers, "e2e-check-user", nats_auth(settings, "runner-api"))
    try:
        for uid, exists in (("alice", True), (minicluster.missing_user, False)):
            msg = await nc.request(CHECK_USER, msgspec.json.encode(CheckUser(uid=uid)), timeout=10)
            reply = msgspec.json.decode(msg.data, type=CheckUserReply)
            assert (reply.exists, reply.error) == (exists, "")
            assert exists or reply.reason == f"no such user on the cluster: {uid}"
    finally:
        await nc.drain()
