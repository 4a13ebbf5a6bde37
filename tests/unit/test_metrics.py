"""The shared metrics: figures read from the read model and the stream at scrape time, the time to
available (once per job), the timing decorator, and /metrics in every process."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from fastapi import Depends, FastAPI, HTTPException
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from bwvisu_common import events as ev
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.metrics import (
    ConsumerLag,
    JobStates,
    ProcessMetrics,
    ReadModelLag,
    count_states,
    note_availability,
    timed,
)
from bwvisu_common.read_model import JobView, fold
from bwvisu_common.service_process import ServiceProcess
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.gateway import Gateway, GatewayForwards
from tests.conditions import eventually
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.firewall import InMemoryFirewall
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore
from tests.samples import sample

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus-client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def test_every_state_is_counted_zero_included() -> None:
    jobs = [JobView(job_id="a", state=JobState.RUNNING), JobView(job_id="b", state=JobState.RUNNING),
            JobView(job_id="c", state=JobState.FINISHED)]
    assert count_states(jobs) == {"submitted": 0, "running": 2, "available": 0, "completing": 0,
                                  "finished": 1}


async def test_jobs_by_state_are_read_from_the_model_at_each_scrape() -> None:
    jobs = [JobView(job_id="a", state=JobState.AVAILABLE)]
    metrics = ProcessMetrics()
    metrics.add(JobStates(lambda: jobs))
    assert samples(await metrics.render())[("bwvisu_jobs", (("state", "available"),))] == 1
    jobs.append(JobView(job_id="b", state=JobState.AVAILABLE))
    assert samples(await metrics.render())[("bwvisu_jobs", (("state", "available"),))] == 2


def _history(*events: ev.Event) -> list[JobView]:
    """The job's view after each event."""
    views, job = [], None
    for seq, event in enumerate(events, 1):
        job = fold([(seq, event)], job)
        assert job is not None
        views.append(job)
    return views


def _lifecycle() -> list[ev.Event]:
    forwarded = ev.PortsForwarded(job_id="j", gateway="gw0", time=T0 + timedelta(seconds=20),
                                  forwards=[ev.Forward(internal_port=1, external_port=2)])
    return [ev.JobSubmitted(job_id="j", uid="alice", template_name="t", time=T0),
            ev.JobStarted(job_id="j", nodes=["cn0"], time=T0 + timedelta(seconds=10)),
            ev.PortsAssigned(job_id="j", gateway="gw0", forwards=forwarded.forwards, nodes=["cn0"]),
            forwarded,
            ev.PortOpen(job_id="j", gateway="gw0", external_port=2, time=T0 + timedelta(seconds=30)),
            ev.PortClosed(job_id="j", gateway="gw0", external_port=2, time=T0 + timedelta(seconds=40)),
            ev.PortOpen(job_id="j", gateway="gw0", external_port=2, time=T0 + timedelta(seconds=50))]


def test_a_job_is_available_from_its_first_open_port_on() -> None:
    views = _history(*_lifecycle())
    assert [v.state for v in views][-3:] == [JobState.AVAILABLE, JobState.RUNNING, JobState.AVAILABLE]
    assert views[3].available_at is None
    assert {v.available_at for v in views[4:]} == {T0 + timedelta(seconds=30)}, "the first time stays"


def test_the_time_to_available_is_observed_once_per_job() -> None:
    count = sample("bwvisu_time_to_available_seconds_count")
    total = sample("bwvisu_time_to_available_seconds_sum")
    views = _history(*_lifecycle())
    for before, after in zip([None, *views], views, strict=False):
        note_availability(before, after)
    assert sample("bwvisu_time_to_available_seconds_count") == count + 1
    assert sample("bwvisu_time_to_available_seconds_sum") == pytest.approx(total + 30)


async def test_the_projector_observes_availability_as_it_writes_the_batch() -> None:
    from bwvisu_common.projector import Projector

    events, state = InMemoryEventStore(), InMemoryStateStore()
    for event in _lifecycle():
        await events.append([event])
    count = sample("bwvisu_time_to_available_seconds_count")
    projector = Projector(events, state)
    await projector.catch_up()
    assert sample("bwvisu_time_to_available_seconds_count") == count + 1
    await Projector(events, state).catch_up()  # a restart resumes after what etcd holds
    assert sample("bwvisu_time_to_available_seconds_count") == count + 1


async def test_the_read_model_lag_is_the_stream_s_last_sequence_minus_its_own() -> None:
    events = InMemoryEventStore()
    live = LiveJobs(events, InMemoryStateStore())
    await events.append([ev.JobSubmitted(job_id="a", uid="alice", template_name="t")])
    await live.catch_up()
    await events.append([ev.JobQueued(job_id="a", slurm_id="1")])
    await events.append([ev.JobStarted(job_id="a", nodes=["cn0"])])
    lag = ReadModelLag(live, live.stream_last_seq)
    metrics = ProcessMetrics()
    metrics.add(lag, lag.sample)
    assert samples(await metrics.render())[("bwvisu_event_lag_events", (("consumer", "read-model"),))] == 2


async def test_a_figure_the_stream_cannot_give_now_is_left_out_not_stale() -> None:
    answers: list[int | Exception] = [5, DependencyUnavailable("NATS is gone")]

    async def last_seq() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    lag = ReadModelLag(LiveJobs(InMemoryEventStore(), InMemoryStateStore()), last_seq)
    metrics = ProcessMetrics(sample_every=0)
    metrics.add(lag, lag.sample)
    assert ("bwvisu_event_lag_events", (("consumer", "read-model"),)) in samples(await metrics.render())
    assert not any(name == "bwvisu_event_lag_events" for name, _ in samples(await metrics.render()))


async def test_a_durable_consumer_s_lag_is_what_it_has_not_acked() -> None:
    events = InMemoryEventStore()
    for job in ("a", "b", "c"):
        await events.append([ev.JobSubmitted(job_id=job, uid="alice", template_name="t")])
    lag = ConsumerLag("scheduler-adapter", events.consumer_pending)
    metrics = ProcessMetrics(sample_every=0)
    metrics.add(lag, lag.sample)
    key = ("bwvisu_event_lag_events", (("consumer", "scheduler-adapter"),))
    assert samples(await metrics.render())[key] == 3
    stop = asyncio.Event()

    async def handle(seq: int, event: ev.AnyEvent) -> None:
        if seq == 3:
            stop.set()

    await asyncio.wait_for(events.consume("scheduler-adapter", handle, stop), 5)
    assert samples(await metrics.render())[key] == 0


async def test_timed_observes_a_coroutine_s_whole_duration_also_when_it_raises() -> None:
    histogram = Histogram("bwvisu_test_work_seconds", "a test's work", registry=None)

    @timed(histogram)
    async def work(fail: bool) -> str:
        await asyncio.sleep(0.02)
        if fail:
            raise ValueError("no")
        return "done"

    assert await work(False) == "done"
    with pytest.raises(ValueError):
        await work(True)
    counts = {s.name: s.value for s in histogram.collect()[0].samples if not s.labels}
    assert counts["bwvisu_test_work_seconds_count"] == 2
    assert counts["bwvisu_test_work_seconds_sum"] >= 0.04


async def test_metrics_are_mounted_outside_the_app_s_auth_and_its_docs() -> None:
    def denied() -> None:
        raise HTTPException(401)

    app = FastAPI()

    @app.get("/jobs", dependencies=[Depends(denied)])
    async def jobs() -> list[str]:
        return []

    ProcessMetrics().mount(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
        answer = await client.get("/metrics")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        assert "process_resident_memory_bytes" in answer.text or "python_info" in answer.text
        assert (await client.get("/jobs")).status_code == 401
        assert "/metrics" not in app.openapi()["paths"]


async def test_a_gateway_reports_the_forwards_its_chains_hold() -> None:
    events, state = InMemoryEventStore(), InMemoryStateStore()
    gateway = Gateway(name="gw0", own_ip="10.0.0.1", events=events, state=state,
                      jobs=LiveJobs(events, state), firewall=InMemoryFirewall(), prober=FakeProber())
    gateway.table.rules["j1"] = [ForwardRule(job_id="j1", external_port=20000 + i, internal_port=21000 + i,
                                             target_ip="10.0.0.20", gateway_ip="10.0.0.1") for i in range(3)]
    metrics = ProcessMetrics()
    metrics.add(GatewayForwards(gateway))
    assert samples(await metrics.render())[("bwvisu_gateway_forwards", (("gateway", "gw0"),))] == 3


async def test_a_metrics_port_that_is_taken_does_not_stop_the_service(caplog) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stop = asyncio.Event()
        async with ServiceProcess("svc", stop) as process:
            process.serve_metrics("127.0.0.1", port)
            running = asyncio.create_task(process.run_until_stopped())
            await eventually(lambda: "could not listen" in caplog.text, "the failure is logged")
            assert not running.done() and process.healthy()
            stop.set()
            await asyncio.wait_for(running, 5)


async def test_a_process_without_http_serves_metrics_on_its_own_port() -> None:
    from bwvisu_cli.servers import free_port

    port = free_port()
    stop = asyncio.Event()
    async with ServiceProcess("svc", stop) as process:
        process.metrics.add(JobStates(lambda: [JobView(job_id="a")]))
        process.serve_metrics("127.0.0.1", port)
        running = asyncio.create_task(process.run_until_stopped())

        async def scraped() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    answer = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            except httpx.HTTPError:
                return False
            return samples(answer.content).get(("bwvisu_jobs", (("state", "submitted"),))) == 1

        await eventually(scraped, "/metrics answers with the process's own collectors")
        stop.set()
        await asyncio.wait_for(running, 5)


def test_a_view_stored_before_available_at_existed_still_decodes() -> None:
    old = msgspec.json.encode({"job_id": "a", "state": "available"})
    assert msgspec.json.decode(old, type=JobView).available_at is None


async def test_scrapes_in_a_row_ask_the_stream_once() -> None:
    """/metrics is served without a login: a flood of scrapes is not a flood of JetStream requests."""
    asked: list[int] = []

    async def last_seq() -> int:
        asked.append(1)
        return 5

    lag = ReadModelLag(LiveJobs(InMemoryEventStore(), InMemoryStateStore()), last_seq)
    metrics = ProcessMetrics()
    metrics.add(lag, lag.sample)
    for _ in range(20):
        assert ("bwvisu_event_lag_events", (("consumer", "read-model"),)) in samples(await metrics.render())
    assert len(asked) == 1
