"""A user's jobs come from the read model's index, which follows new jobs, adoptions and forgetting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bwvisu_common import events as ev
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.projector import Projector
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.state_store import InMemoryStateStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ids(jobs: list) -> set[str]:  # type: ignore[type-arg]
    return {j.job_id for j in jobs}


async def test_jobs_of_a_user_equal_a_scan_of_every_job() -> None:
    events, state = InMemoryEventStore(), InMemoryStateStore()
    for i in range(30):
        await events.append([ev.JobSubmitted(job_id=f"j{i}", uid=f"user{i % 4}", template_name="t", time=T0)])
    # A job the scheduler adopted before its JobSubmitted was read: its user comes with the adoption.
    await events.append([ev.JobAdopted(job_id="adopted", slurm_id="7", uid="user1", time=T0)])
    await Projector(events, state).catch_up()  # a snapshot, as a starting service finds one
    await events.append([ev.JobSubmitted(job_id="later", uid="user2", template_name="t", time=T0)])
    await events.append([ev.JobEnded(job_id="j2", slurm_state="COMPLETED", exit_code=0, time=T0)])
    live = LiveJobs(events, state, kept_for=timedelta(days=1), clock=lambda: T0 + timedelta(days=2))
    await live.catch_up()
    for uid in ("user0", "user1", "user2", "user3", "nobody"):
        assert ids(live.of_user(uid)) == {j.job_id for j in live.all() if j.uid == uid}
    assert "adopted" in ids(live.of_user("user1")) and "later" in ids(live.of_user("user2"))
    assert "j2" not in ids(live.of_user("user2")), "forgotten once finished longer than kept"
    assert live.of_user("nobody") == []
