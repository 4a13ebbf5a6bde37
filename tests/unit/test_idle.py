"""Idle sessions: the read model's last activity and cancel reason, the site's policy (warning,
cancel), and scheduler-adapter's culler on in-memory stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bwvisu_common import events as ev
from bwvisu_common.election import LeadershipLost
from bwvisu_common.errors import ConfigError
from bwvisu_common.idle import IdlePolicy, decide_idle_cancel, idle_minutes, idle_since, warning
from bwvisu_common.job_facts import JobState, WhyKind
from bwvisu_common.job_history import describe, outcome
from bwvisu_common.read_model import JobView, fold
from bwvisu_common.settings import parse_settings
from scheduler_adapter.idle import IdleCuller
from tests.fakes.election import ElectionBoard, FakeElection
from tests.fakes.event_store import InMemoryEventStore

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
FWD = [ev.Forward(internal_port=7000, external_port=20001)]
POLICY = IdlePolicy(timeout_minutes=30, warning_minutes=10)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def available(job: str = "j", gateway: str = "gw0") -> list[ev.Event]:
    return [ev.JobSubmitted(job_id=job, uid="alice", template_name="t", time=at(-2)),
            ev.JobStarted(job_id=job, nodes=["cn0"], time=at(-1)),
            ev.PortsAssigned(job_id=job, gateway=gateway, nodes=["cn0"], forwards=FWD, time=at(-1)),
            ev.PortsForwarded(job_id=job, gateway=gateway, forwards=FWD, time=at(-1)),
            ev.PortOpen(job_id=job, external_port=20001, gateway=gateway, time=at(0))]


def view(*events: ev.Event) -> JobView:
    job = fold(list(enumerate(events, 1)))
    assert job is not None
    return job


def activity(minutes: float, gateway: str = "gw0") -> ev.SessionActivity:
    return ev.SessionActivity(job_id="j", gateway=gateway, last_activity=at(minutes), time=at(minutes))


# --- read model ------------------------------------------------------------------------------


def test_the_read_model_keeps_the_latest_activity_of_any_gateway() -> None:
    # Connections made through a gateway the job moved away from live on there: its word counts.
    job = view(*available(), activity(5), activity(3), activity(9, gateway="gw1"), activity(7))
    assert job.last_activity == at(9)  # an older word changes nothing


def test_a_session_without_traffic_is_idle_since_it_became_available() -> None:
    assert idle_since(view(*available())) == at(0)
    assert idle_minutes(view(*available()), at(12.5)) == 12
    assert idle_since(view(*available(), activity(5))) == at(5)
    assert idle_since(view(*available()[:4])) is None  # not answering yet


def test_an_idle_cancel_keeps_its_reason_in_the_details_to_the_end() -> None:
    cancelled = [*available(), ev.JobCancelRequested(job_id="j", reason="idle")]
    job = view(*cancelled)
    assert (job.cancel_reason, job.why.kind, job.details) == ("idle", WhyKind.CANCEL_REQUESTED,
                                                              "cancel requested: idle")
    ended = view(*cancelled, ev.JobCancelRequested(job_id="j"),
                 ev.JobEnded(job_id="j", slurm_state="CANCELLED", exit_code=0))
    assert ended.state == JobState.FINISHED
    assert ended.details == "ended: CANCELLED (idle), exit code 0"
    assert "idle" in outcome(ended)
    assert describe(ev.JobCancelRequested(job_id="j", reason="idle")) == "cancel requested: idle"
    # The owner's cancel says what it always said.
    assert view(*available(), ev.JobCancelRequested(job_id="j")).details == "cancel requested"


# --- policy ----------------------------------------------------------------------------------


def test_off_by_default_no_warning_and_no_cancel() -> None:
    job = view(*available())
    assert warning(job, IdlePolicy(), at(1000)) is None
    assert decide_idle_cancel(job, IdlePolicy(), at(1000)) == []


def test_the_warning_comes_within_its_lead_time_then_the_cancel_at_the_limit() -> None:
    job = view(*available(), activity(10))
    assert warning(job, POLICY, at(29)) is None  # 11 min before the limit
    assert warning(job, POLICY, at(31)) == timedelta(minutes=9)
    assert decide_idle_cancel(job, POLICY, at(39.9)) == []
    [cancel] = decide_idle_cancel(job, POLICY, at(40))
    assert isinstance(cancel, ev.JobCancelRequested) and cancel.reason == "idle"


def test_no_idle_cancel_for_a_job_already_cancelled_or_ended() -> None:
    job = view(*available(), ev.JobCancelRequested(job_id="j"))
    assert decide_idle_cancel(job, POLICY, at(100)) == []
    ended = view(*available(), ev.JobEnded(job_id="j", slurm_state="COMPLETED", exit_code=0))
    assert decide_idle_cancel(ended, POLICY, at(100)) == []


def test_settings_take_the_policy_and_refuse_nonsense() -> None:
    base = b'"bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.1"}]'
    s = parse_settings(b"{" + base + b', "idle-timeout": 120, "idle-warning": 5, "activity-interval": 2}')
    assert (s.idle_timeout, s.idle_warning, s.activity_interval) == (120, 5, 2)
    assert parse_settings(b"{" + base + b"}").idle_timeout == 0
    with pytest.raises(ConfigError, match="idle-timeout"):
        parse_settings(b"{" + base + b', "idle-timeout": -1}')
    with pytest.raises(ConfigError, match="activity-interval"):
        parse_settings(b"{" + base + b', "activity-interval": 0}')


# --- the culler ------------------------------------------------------------------------------


class Views:
    """The culler's read model: the jobs folded from the store's events (kept up by `refresh`)."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self.store = store
        self.jobs: list[JobView] = []

    async def refresh(self, *job_ids: str) -> None:
        self.jobs = [j for j in [fold(await self.store.read_job(i)) for i in job_ids] if j is not None]

    def __call__(self) -> list[JobView]:
        return self.jobs


async def test_the_culler_cancels_an_idle_session_once_and_leaves_an_active_one() -> None:
    store = InMemoryEventStore()
    for job in ("idle", "busy"):
        await store.append(available(job))
    await store.append([ev.SessionActivity(job_id="busy", gateway="gw0", last_activity=at(25))])
    views = Views(store)
    await views.refresh("idle", "busy")
    culler = IdleCuller(views, store, POLICY, interval=0.01, clock=lambda: at(31))
    assert await culler.cull_once() == ["idle"]
    _, last = (await store.read_job("idle"))[-1]
    assert isinstance(last, ev.JobCancelRequested) and last.reason == "idle"
    # A second culler on the same (now stale) read model conflicts: nothing appended twice.
    assert await culler.cull_once() == []
    await views.refresh("idle", "busy")
    assert await culler.cull_once() == []
    assert [type(e).__name__ for _, e in await store.read_job("idle")].count("JobCancelRequested") == 1


async def test_traffic_that_arrived_after_the_decision_wins() -> None:
    store = InMemoryEventStore()
    await store.append(available("j"))
    views = Views(store)
    await views.refresh("j")
    await store.append([activity(30.5)])  # not in the culler's read model yet
    culler = IdleCuller(views, store, POLICY, interval=0.01, clock=lambda: at(31))
    assert await culler.cull_once() == []


async def test_a_culler_whose_term_ended_does_not_cancel() -> None:
    store = InMemoryEventStore()
    await store.append(available("j"))
    views = Views(store)
    await views.refresh("j")
    election = FakeElection(ElectionBoard(), "a")
    term = await election.campaign("scheduler-adapter/idle")
    election.lose_lease()
    culler = IdleCuller(views, store, POLICY, interval=0.01, clock=lambda: at(31))
    with pytest.raises(LeadershipLost):
        await culler.cull_once(term)
    await culler.run(asyncio.Event(), term)  # returns at once: the term is over
    assert "JobCancelRequested" not in [type(e).__name__ for _, e in await store.read_job("j")]


async def test_no_session_is_ended_as_idle_while_its_gateway_is_not_counting() -> None:
    # gw0's agent is silent (dead, or cut off from NATS): its rules may still forward a busy
    # session, so no report from it is no evidence of idleness.
    store = InMemoryEventStore()
    await store.append(available("j"))
    views = Views(store)
    await views.refresh("j")
    counting: list[str] = ["gw1"]
    culler = IdleCuller(views, store, POLICY, interval=0.01, clock=lambda: at(31), counting=lambda: counting)
    assert await culler.cull_once() == []
    counting.append("gw0")  # it beats again: its silence now means no traffic
    assert await culler.cull_once() == ["j"]
