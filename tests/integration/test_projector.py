"""The etcd read model against the real stream: follow, resume, rebuild to the same state."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.projector import Projector
from bwvisu_common.read_model import fold
from tests.conditions import eventually

pytestmark = pytest.mark.integration

FWD = [ev.Forward(internal_port=20005, external_port=21005)]


def history(job: str, rng: random.Random) -> list[ev.Event]:
    steps: list[ev.Event] = [
        ev.JobSubmitted(job_id=job, uid=rng.choice(["alice", "bob"]), template_name="xpra"),
        ev.JobQueued(job_id=job, slurm_id=str(rng.randrange(10**6))),
        ev.JobStarted(job_id=job, nodes=["cn0"]),
        ev.PortsForwarded(job_id=job, gateway="gw0", forwards=FWD),
        ev.PortOpen(job_id=job, external_port=21005),
        ev.JobEnded(job_id=job, slurm_state="COMPLETED", exit_code=0),
    ]
    return steps[: rng.randint(1, len(steps))]


async def fill(store, jobs: int, seed: int) -> dict[str, list[ev.Event]]:
    rng = random.Random(seed)
    histories = {f"job{seed}-{i}": history(f"job{seed}-{i}", rng) for i in range(jobs)}
    # Interleave jobs as a real cluster would.
    cursors = {job: 0 for job in histories}
    while cursors:
        job = rng.choice(sorted(cursors))
        await store.append([histories[job][cursors[job]]])
        cursors[job] += 1
        if cursors[job] == len(histories[job]):
            del cursors[job]
    return histories


async def test_projection_equals_the_fold_and_a_rebuild_is_identical(event_store, state_store):
    histories = await fill(event_store, 40, seed=1)
    projector = Projector(event_store, state_store, max_batch=25)
    seq = await projector.catch_up()
    assert seq == await event_store.last_seq()
    projected, stored_seq = await state_store.load_jobs()
    assert stored_seq == seq and set(projected) == set(histories)
    for job, events in histories.items():
        expected = fold(await event_store.read_job(job))
        assert projected[job] == expected
        assert [type(e) for _, e in await event_store.read_job(job)] == [type(e) for e in events]

    await Projector(event_store, state_store).rebuild()
    assert await state_store.load_jobs() == (projected, stored_seq)


async def test_a_restarted_projector_resumes_where_etcd_is(event_store, state_store):
    await fill(event_store, 10, seed=2)
    await Projector(event_store, state_store).catch_up()
    more = await fill(event_store, 5, seed=3)
    before, _ = await state_store.load_jobs()
    await Projector(event_store, state_store).catch_up()
    after, seq = await state_store.load_jobs()
    assert seq == await event_store.last_seq()
    assert set(after) == set(before) | set(more)
    assert all(after[j] == before[j] for j in before)


async def test_the_running_projector_follows_new_events(event_store, state_store):
    projector = Projector(event_store, state_store)
    caught_up = asyncio.Event()
    task = asyncio.create_task(projector.run(caught_up))
    try:
        await asyncio.wait_for(caught_up.wait(), 10)
        await event_store.append([ev.JobSubmitted(job_id="live", uid="alice", template_name="t")], 0)
        await event_store.append([ev.JobSubmitFailed(job_id="live", reason="nope")])
        for _ in range(100):
            job = await state_store.get_job("live")
            if job is not None and job.state == JobState.FINISHED:
                break
            await asyncio.sleep(0.05)
        assert job is not None and job.state == JobState.FINISHED and "nope" in job.details
    finally:
        task.cancel()


async def test_live_jobs_answer_waiters_as_events_arrive(event_store, state_store):
    await fill(event_store, 3, seed=4)
    await Projector(event_store, state_store).catch_up()
    live = LiveJobs(event_store, state_store)
    caught_up = asyncio.Event()
    task = asyncio.create_task(live.run(caught_up))
    try:
        await asyncio.wait_for(caught_up.wait(), 10)
        assert {j.job_id for j in live.all()} >= {"job4-0", "job4-1", "job4-2"}
        waiter = asyncio.create_task(live.wait_for("w", lambda j: j.slurm_id != "", timeout=10))
        await event_store.append([ev.JobSubmitted(job_id="w", uid="bob", template_name="t")], 0)
        await event_store.append([ev.JobQueued(job_id="w", slurm_id="99")])
        job = await waiter
        assert job is not None and job.slurm_id == "99" and live.get("w") == job
        assert await live.wait_for("never", lambda j: True, timeout=0.2) is None
    finally:
        task.cancel()


async def test_two_projectors_at_once_write_the_same_read_model_as_one(event_store, state_store):
    """HA: both follow the stream; the guarded writes let each batch in once, whoever wins."""
    tasks = [asyncio.create_task(Projector(event_store, state_store, max_batch=7).run()) for _ in range(2)]
    try:
        histories = await fill(event_store, 30, seed=5)
        last = await event_store.last_seq()
        for _ in range(200):
            projected, seq = await state_store.load_jobs()
            if seq == last:
                break
            await asyncio.sleep(0.05)
        assert seq == last
        for job in histories:
            assert projected[job] == fold(await event_store.read_job(job))
    finally:
        for task in tasks:
            task.cancel()


async def test_finished_jobs_leave_etcd_while_the_projector_runs_and_stay_gone(event_store, state_store):
    now = [datetime.now(UTC)]
    kept_for = timedelta(seconds=5)  # swept every second
    await event_store.append([ev.JobSubmitted(job_id="old", uid="alice", template_name="t"),
                              ev.JobEnded(job_id="old", slurm_state="COMPLETED", exit_code=0)], 0)
    await event_store.append([ev.JobSubmitted(job_id="on", uid="bob", template_name="t")], 0)
    projector = Projector(event_store, state_store, kept_for=kept_for, clock=lambda: now[0])
    task = asyncio.create_task(projector.run())
    try:
        await eventually(lambda: projector.get("on") is not None, "the projector caught up")
        assert await state_store.get_job("old") is not None
        now[0] += timedelta(minutes=1)
        await eventually(lambda: projector.get("old") is None, "the finished job is forgotten")
        assert await state_store.get_job("old") is None and await state_store.get_job("on") is not None

        late = await event_store.append([ev.ForwardsRemoved(job_id="old", gateway="gw1")])
        await eventually(lambda: projector.seq >= late, "the late event is read")
        assert projector.get("old") is None and await state_store.get_job("old") is None
    finally:
        task.cancel()

    live = LiveJobs(event_store, state_store, kept_for=kept_for, clock=lambda: now[0])
    await live.catch_up()
    assert [j.job_id for j in live.all()] == ["on"]
    await Projector(event_store, state_store, kept_for=kept_for, clock=lambda: now[0]).rebuild()
    assert set((await state_store.load_jobs())[0]) == {"on"}, "a rebuild forgets what is due again"
