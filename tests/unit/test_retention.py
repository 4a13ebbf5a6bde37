"""Retention: finished jobs leave memory and the projection after `kept_for`, and stay gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs, ProjectionMoved
from bwvisu_common.projector import Projector
from bwvisu_common.read_model import JobView, due_for_forgetting, opens_job
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.state_store import InMemoryStateStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def lifecycle(job: str, at: datetime, *, ends: bool = True) -> list[ev.Event]:
    events: list[ev.Event] = [ev.JobSubmitted(job_id=job, uid="alice", template_name="t", time=at),
                              ev.JobStarted(job_id=job, nodes=["cn0"], time=at)]
    if ends:
        events.append(ev.JobEnded(job_id=job, slurm_state="COMPLETED", exit_code=0, time=at + DAY))
    return events


def test_only_jobs_finished_longer_than_kept_for_are_due():
    jobs = [JobView(job_id="old-done", state=JobState.FINISHED, updated_at=T0),
            JobView(job_id="new-done", state=JobState.FINISHED, updated_at=T0 + 6 * DAY),
            JobView(job_id="old-running", state=JobState.RUNNING, updated_at=T0)]
    assert due_for_forgetting(jobs, T0 + 7 * DAY, 7 * DAY) == ["old-done"]
    assert due_for_forgetting(jobs, T0 + 6 * DAY, 7 * DAY) == []


def test_only_a_jobs_first_event_opens_a_view():
    assert opens_job(ev.JobSubmitted(job_id="j", uid="a", template_name="t"))
    assert opens_job(ev.JobAdopted(job_id="j", slurm_id="5", uid="a"))
    assert not opens_job(ev.ForwardsRemoved(job_id="j", gateway="gw1"))


async def fed(store: InMemoryEventStore, *jobs: list[ev.Event]) -> None:
    for events in jobs:
        await store.append(events)


async def test_a_finished_job_is_forgotten_and_its_late_events_do_not_bring_it_back():
    events, state, clock = InMemoryEventStore(), InMemoryStateStore(), Clock()
    await fed(events, lifecycle("done", T0), lifecycle("running", T0, ends=False))
    projector = Projector(events, state, kept_for=7 * DAY, clock=clock)
    await projector.catch_up()
    clock.now = T0 + 7 * DAY
    assert await projector.forget_finished() == []  # finished a day after T0: six days ago
    clock.now = T0 + 8 * DAY
    assert await projector.forget_finished() == ["done"]
    assert projector.get("done") is None and projector.get("running") is not None
    assert "done" not in state.jobs and "running" in state.jobs

    await events.append([ev.ForwardsRemoved(job_id="done", gateway="gw1")])
    await events.append([ev.JobEnded(job_id="done", slurm_state="COMPLETED", exit_code=0)])
    await projector.catch_up()
    assert projector.get("done") is None and "done" not in state.jobs
    assert state.seq == await events.last_seq()


async def test_a_service_loading_an_old_snapshot_does_not_keep_due_jobs():
    events, state = InMemoryEventStore(), InMemoryStateStore()
    await fed(events, lifecycle("done", T0), lifecycle("recent", T0 + 9 * DAY))
    await Projector(events, state, kept_for=7 * DAY, clock=lambda: T0).catch_up()
    assert set(state.jobs) == {"done", "recent"}  # nothing was due when it was written

    clock = Clock()
    clock.now = T0 + 10 * DAY
    live = LiveJobs(events, state, kept_for=7 * DAY, clock=clock)
    await live.catch_up()
    assert [j.job_id for j in live.all()] == ["recent"]
    assert "done" in state.jobs, "a service only forgets in its memory: etcd is the projector's"


async def test_a_stale_projector_does_not_forget_jobs_behind_anothers_back():
    events, state, clock = InMemoryEventStore(), InMemoryStateStore(), Clock()
    await fed(events, lifecycle("done", T0))
    stale = Projector(events, state, kept_for=DAY, clock=clock)
    await stale.catch_up()
    await fed(events, lifecycle("other", T0))
    await Projector(events, state, kept_for=30 * DAY, clock=clock).catch_up()
    clock.now = T0 + 3 * DAY
    with pytest.raises(ProjectionMoved):
        await stale.forget_finished()
    assert set(state.jobs) == {"done", "other"}
