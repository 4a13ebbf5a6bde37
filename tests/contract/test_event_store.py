"""One set of expectations for every EventStore: the in-memory fake and JetStream alike."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bwvisu_common import events as ev
from bwvisu_common.errors import ConcurrencyConflict
from bwvisu_common.logs import current_job
from tests.conditions import eventually
from tests.fakes.event_store import InMemoryEventStore


def job() -> str:
    return uuid.uuid4().hex[:12]


class EventStoreContract:
    @pytest.fixture
    def store(self):  # pragma: no cover - overridden
        raise NotImplementedError

    async def test_reads_a_jobs_events_in_order_with_sequences(self, store):
        a, b = job(), job()
        first = await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        await store.append([ev.JobSubmitted(job_id=b, uid="bob", template_name="t")], 0)
        last = await store.append(
            [ev.JobQueued(job_id=a, slurm_id="7"), ev.JobStarted(job_id=a, nodes=["cn0"])], first
        )
        got = await store.read_job(a)
        assert [type(e).__name__ for _, e in got] == ["JobSubmitted", "JobQueued", "JobStarted"]
        assert got[0][0] == first and got[-1][0] == last
        assert [s for s, _ in got] == sorted(s for s, _ in got)
        assert await store.read_job(job()) == []
        assert [s for s, _ in await store.read_job(a, from_seq=first + 1)] == [s for s, _ in got[1:]]

    async def test_a_retried_event_is_stored_once(self, store):
        a = job()
        event = ev.JobSubmitted(job_id=a, uid="alice", template_name="t")
        s1 = await store.append([event], 0)
        s2 = await store.append([event])
        assert s1 == s2
        assert await store.append([event], 0) == s1, "also made again with its expected version"
        assert [e for _, e in await store.read_job(a)] == [event]

    async def test_a_stale_expected_version_is_a_conflict(self, store):
        a = job()
        s1 = await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        await store.append([ev.JobQueued(job_id=a, slurm_id="1")], s1)
        with pytest.raises(ConcurrencyConflict):
            await store.append([ev.JobQueued(job_id=a, slurm_id="2")], s1)
        with pytest.raises(ConcurrencyConflict):
            await store.append([ev.JobSubmitted(job_id=a, uid="x", template_name="t")], 0)
        assert [e.slurm_id for _, e in await store.read_job(a) if isinstance(e, ev.JobQueued)] == ["1"]

    async def test_two_racing_writers_never_interleave(self, store):
        """Both decide on what they read; every stored event was decided on exactly the history
        before it, so no writer's event lands on a history it did not see."""
        a = job()
        base = await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        conflicts = 0

        async def writer(name: str, rounds: int) -> None:
            nonlocal conflicts
            version = base
            done = 0
            while done < rounds:
                event = ev.JobDetailsChanged(job_id=a, details=f"{name}-{done}@{version}")
                try:
                    version = await store.append([event], version)
                    done += 1
                except ConcurrencyConflict:
                    conflicts += 1
                    version = (await store.read_job(a))[-1][0]
                await asyncio.sleep(0)

        await asyncio.gather(writer("x", 15), writer("y", 15))
        history = await store.read_job(a)
        assert len(history) == 31 and conflicts > 0, "the writers did not race"
        for (previous_seq, _), (_, event) in zip(history, history[1:], strict=False):
            assert event.details.endswith(f"@{previous_seq}"), [e.details for _, e in history[1:]]
        for name in ("x", "y"):
            mine = [e.details.split("@")[0] for _, e in history if getattr(e, "details", "").startswith(name)]
            assert mine == [f"{name}-{i}" for i in range(15)]

    async def test_several_events_go_in_together_and_a_retry_stores_them_once(self, store):
        a = job()
        base = await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        batch = [ev.JobStarted(job_id=a, nodes=["cn0"]), ev.JobCompleting(job_id=a),
                 ev.JobEnded(job_id=a, slurm_state="COMPLETED", exit_code=0)]
        last = await store.append(batch, base)
        assert await store.append(batch, base) == last, "a retried batch answers as the first time"
        stored = await store.read_job(a)
        assert [e for _, e in stored[1:]] == batch and stored[-1][0] == last
        assert [s for s, _ in stored[1:]] == [last - 2, last - 1, last], "stored contiguously"

    async def test_a_conflict_mid_batch_appends_nothing_more(self, store):
        a = job()
        base = await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        await store.append([ev.JobDetailsChanged(job_id=a, details="other writer")], base)
        with pytest.raises(ConcurrencyConflict):
            await store.append([ev.JobDetailsChanged(job_id=a, details=f"late-{i}") for i in range(3)], base)
        assert [e.details for _, e in (await store.read_job(a))[1:]] == ["other writer"]

    async def test_batches_deliver_everything_after_a_sequence(self, store):
        a = job()
        start = await store.last_seq()
        seq = 0
        for i in range(7):
            seq = await store.append([ev.JobDetailsChanged(job_id=a, details=str(i))], None)
        seen: list[int] = []
        batches = store.batches(start, max_batch=3)
        async for batch in batches:
            seen += [s for s, _ in batch]
            if seen and seen[-1] == seq:
                break
        await batches.aclose()
        assert len(seen) == 7 and seen == sorted(seen) and seen[-1] == seq

    async def test_consume_delivers_each_event_to_a_handler(self, store):
        a = job()
        await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        got: list[str] = []
        stop = asyncio.Event()

        async def handler(seq: int, event: ev.Event) -> None:
            if event.job_id == a:
                got.append(type(event).__name__)
                stop.set()

        await asyncio.wait_for(store.consume(f"test-{a}", handler, stop), timeout=10)
        assert got == ["JobSubmitted"]

    async def test_a_handler_runs_about_its_events_job(self, store):
        # What a handler logs names the job (JSON logs), without each handler saying so.
        a = job()
        await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        about: list[str] = []
        stop = asyncio.Event()

        async def handler(seq: int, event: ev.Event) -> None:
            if event.job_id == a:
                about.append(current_job())
                stop.set()

        await asyncio.wait_for(store.consume(f"about-{a}", handler, stop), timeout=10)
        assert about == [a] and current_job() == ""


    async def test_two_durable_names_each_see_every_event(self, store):
        a = job()
        await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        await store.append([ev.JobQueued(job_id=a, slurm_id="1")], None)
        for durable in (f"one-{a}", f"two-{a}"):
            assert await consume_until(store, durable, a, 2) == ["JobSubmitted", "JobQueued"], durable

    async def test_a_restarted_consumer_resumes_after_what_it_acked(self, store):
        a = job()
        await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        assert await consume_until(store, f"resume-{a}", a, 1) == ["JobSubmitted"]
        await store.append([ev.JobQueued(job_id=a, slurm_id="1")], None)
        assert await consume_until(store, f"resume-{a}", a, 1) == ["JobQueued"]
        assert await consume_until(store, f"fresh-{a}", a, 2) == ["JobSubmitted", "JobQueued"]

    async def test_an_event_whose_handler_raised_is_delivered_again(self, store):
        a = job()
        await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        await store.append([ev.JobQueued(job_id=a, slurm_id="1")], None)
        got: list[str] = []
        stop = asyncio.Event()

        async def handler(seq: int, event: ev.Event) -> None:
            if event.job_id != a:
                return
            got.append(type(event).__name__)
            if got.count("JobSubmitted") == 1 and isinstance(event, ev.JobSubmitted):
                raise RuntimeError("a handler failing once")
            if got.count("JobSubmitted") == 2 and "JobQueued" in got:
                stop.set()

        await asyncio.wait_for(store.consume(f"retry-{a}", handler, stop), timeout=15)
        assert got.count("JobSubmitted") == 2 and got.count("JobQueued") == 1, got
        assert await consume_until(store, f"retry-{a}", a, 0, quiet=0.3) == [], "all acked by now"

    async def test_a_consumer_s_pending_events_are_those_it_has_not_acked(self, store):
        a = job()
        await store.append([ev.JobSubmitted(job_id=a, uid="alice", template_name="t")], 0)
        assert await consume_until(store, f"lag-{a}", a, 1) == ["JobSubmitted"]

        async def pending_is(n: int) -> bool:
            return await store.consumer_pending(f"lag-{a}") == n

        await eventually(lambda: pending_is(0), "every event acked: nothing pending")
        await store.append([ev.JobQueued(job_id=a, slurm_id="1")], None)
        await store.append([ev.JobStarted(job_id=a, nodes=["cn0"])], None)
        await eventually(lambda: pending_is(2), "two events appended since: two pending")
    async def test_concurrent_consumers_handle_two_jobs_at_once_and_one_job_in_order(self, store):
        a, b = job(), job()
        for j in (a, b):
            await store.append([ev.JobSubmitted(job_id=j, uid="alice", template_name="t")], 0)
        await store.append([ev.JobQueued(job_id=a, slurm_id="1")], None)
        both_started, stop = asyncio.Event(), asyncio.Event()
        running: set[str] = set()
        got: list[tuple[str, str]] = []

        async def handler(seq: int, event: ev.Event) -> None:
            if event.job_id not in (a, b):
                return
            assert event.job_id not in running, "two events of one job at once"
            running.add(event.job_id)
            got.append((event.job_id, type(event).__name__))
            if len(got) >= 2:
                both_started.set()
            # The first of each job waits until the other job's started: only concurrency ends it.
            await asyncio.wait_for(both_started.wait(), 5)
            running.discard(event.job_id)
            if len(got) == 3:
                stop.set()

        await asyncio.wait_for(store.consume(f"lanes-{a}", handler, stop, concurrency=4), timeout=15)
        assert [name for j, name in got if j == a] == ["JobSubmitted", "JobQueued"]
        assert {j for j, _ in got[:2]} == {a, b}


async def consume_until(store, durable: str, job_id: str, count: int, quiet: float = 0.0) -> list[str]:
    """The names of `job_id`'s events a consumer under `durable` is handed until it has `count`
    (then, for `quiet` seconds more, whatever else comes), and the consumer stopped."""
    got: list[str] = []
    stop = asyncio.Event()

    async def handler(seq: int, event: ev.Event) -> None:
        if event.job_id == job_id:
            got.append(type(event).__name__)
        if len(got) >= count and not quiet:
            stop.set()

    task = asyncio.create_task(store.consume(durable, handler, stop))
    if quiet:
        await asyncio.sleep(quiet)  # a span in which nothing may arrive: there is no event to wait on
        stop.set()
    await asyncio.wait_for(task, timeout=15)
    return got


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryEventStore()


@pytest.mark.integration
class TestJetStreamEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, event_store):
        return event_store
