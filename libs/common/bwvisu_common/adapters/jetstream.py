"""JetStreamEventStore: the job event log on NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig

from bwvisu_common import events as ev
from bwvisu_common.adapters.nats_connection import NatsAuth as NatsAuth
from bwvisu_common.adapters.nats_connection import connect_nats as connect_nats
from bwvisu_common.errors import ConcurrencyConflict, DependencyUnavailable
from bwvisu_common.lanes import Lanes
from bwvisu_common.logs import about_job
from bwvisu_common.ports import Handler

log = logging.getLogger(__name__)

STREAM = "BWVISU_EVENTS"
SUBJECT_PREFIX = "bwvisu.jobs."
ALL_SUBJECTS = SUBJECT_PREFIX + ">"
# Who appends an event is the subject's last token (bwvisu.jobs.<job>.<source>), so that NATS
# permissions can say which identity may append to the stream at all; a job's history is every
# subject under bwvisu.jobs.<job>.
DEFAULT_SOURCE = "admin"
# JetStream's error codes: a failed Nats-Expected-Last-Subject-Sequence check, and an atomic
# batch whose message ids were stored already (a retried batch).
WRONG_LAST_SEQUENCE = 10071
BATCH_ALREADY_STORED = 10201
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
# The optimistic check covers the job's subjects of every source, not only the one published to.
EXPECTED_LAST_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
# Seconds between a followed stream's heartbeats; two missed ones (a server died) and nats-py makes
# the consumer again elsewhere, so a follower is back within 2 s of the fault.
FOLLOW_HEARTBEAT = 1.0
# Seconds a follower waits quietly before it checks that the stream did not move on without it.
STALL_CHECK = 2.0
# Seconds an append keeps trying while the stream has no leader or the connection moves to
# another server of the cluster (a server died, or fell silent: 3-4 s to notice): long enough for
# JetStream to elect a new leader too (4-9 s).
APPEND_PATIENCE = 20.0
# Events a durable consumer fetches at once (at most), and how long it waits for a backlog's
# events to come (another replica may have taken some).
FETCH_BATCH = 64
# Seconds an event handed to a durable consumer stays its own without a word from it (see
# _handle_one): then the server hands it to another consumer of the same name.
ACK_WAIT = 6.0
# A handler still at work after this long is stopped and its event redelivered: longer than any
# handler's own deadlines (a submit waits up to a minute for Slurm).
MAX_IN_PROGRESS = 300.0
BACKLOG_WAIT = 0.1
# What a server dying looks like to a publisher: no answer, or nobody leading the stream yet.
_TRANSIENT = (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
              nats.errors.ConnectionReconnectingError, nats.js.errors.NoStreamResponseError,
              nats.js.errors.ServiceUnavailableError)


class _StoreMoving(Exception):
    """An append that got no answer; it may be made again (the event ids deduplicate)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclasses.dataclass(frozen=True)
class StreamLimits:
    """Bounds of the stream, so that it cannot grow without end (0: no bound).

    The oldest events go first (a finished job's, in practice); a job whose subject holds
    `max_per_job` events loses its oldest, which only a runaway job ever reaches.
    """

    max_bytes: int = 8 * 1024**3
    max_age: float = 180 * 86400.0  # seconds
    max_per_job: int = 10_000

    def apply(self, config: StreamConfig) -> StreamConfig:
        return dataclasses.replace(
            config, max_bytes=self.max_bytes or -1, max_age=self.max_age or 0.0,
            max_msgs_per_subject=self.max_per_job or -1, discard=DiscardPolicy.OLD)

    def differ(self, config: StreamConfig) -> bool:
        wanted = self.apply(config)
        return any(getattr(config, f) != getattr(wanted, f)
                   for f in ("max_bytes", "max_age", "max_msgs_per_subject", "discard"))


def job_subjects(job_id: str) -> str:
    """Every subject of one job's history (a filter)."""
    return f"{SUBJECT_PREFIX}{job_id}.>"


def job_subject(job_id: str, source: str = DEFAULT_SOURCE) -> str:
    """The subject on which `source` appends to a job's history."""
    return f"{SUBJECT_PREFIX}{job_id}.{source}"


def source_of(subject: str) -> str:
    """The identity that appended an event, from its subject."""
    return subject.rsplit(".", 1)[-1]


class JetStreamEventStore:
    """The event log: one subject per job, the event id as Nats-Msg-Id for deduplication."""

    def __init__(self, nc: NatsClient, *, replicas: int = 1, timeout: float = 5.0,
                 limits: StreamLimits | None = None, source: str = DEFAULT_SOURCE) -> None:
        self._nc = nc
        self._limits = limits or StreamLimits()
        self._source = source
        self._timeout = timeout
        self._js: JetStreamContext = nc.jetstream(timeout=timeout)
        self._replicas = replicas

    @property
    def nats(self) -> NatsClient:
        """The connection underneath, for core NATS requests beside the event log."""
        return self._nc

    async def ensure_stream(self) -> None:
        """Create the stream, or bring an existing one up to date (idempotent): atomic batches on,
        the configured limits."""
        config = self._limits.apply(StreamConfig(
            name=STREAM, subjects=[ALL_SUBJECTS], storage=StorageType.FILE,
            num_replicas=self._replicas, duplicate_window=120.0, allow_atomic=True,
        ))
        try:
            try:
                info = await self._js.stream_info(STREAM)
            except nats.js.errors.NotFoundError:
                await self._js.add_stream(config)
                log.info("created stream %s (replicas %d)", STREAM, self._replicas)
                return
            if not info.config.allow_atomic or self._limits.differ(info.config):
                # A stream made by an earlier version or with other limits: several events of
                # one decision go in at once, and the stream is bounded as configured.
                await self._js.update_stream(self._limits.apply(
                    dataclasses.replace(info.config, allow_atomic=True)))
                log.info("stream %s updated: atomic batches, limits %s", STREAM, self._limits)
        except (TimeoutError, nats.errors.Error) as exc:
            raise DependencyUnavailable(f"JetStream did not create stream {STREAM}: {exc}") from exc

    async def append(self, events: Sequence[ev.Event], expected_version: int | None = None) -> int:
        job_id = ev.job_of(events)
        deadline = asyncio.get_running_loop().time() + APPEND_PATIENCE
        while True:
            try:
                if len(events) > 1:
                    return await self._append_batch(job_id, events, expected_version)
                return await self._append_one(job_id, events[0], expected_version)
            except ConcurrencyConflict:
                # JetStream checks the expected sequence before the event ids: an append made again
                # after its answer was lost finds its own events stored, and that is success.
                stored = await self._stored_seq(job_id, events[-1].event_id)
                if stored is None:
                    raise
                return stored
            except _StoreMoving as exc:
                # The event ids make a retry safe: an event stored already is acknowledged as a
                # duplicate or found above, never stored twice.
                if asyncio.get_running_loop().time() > deadline:
                    raise DependencyUnavailable(f"JetStream did not store the events: {exc.cause!r}") from exc
                log.info("JetStream did not answer (%r); appending again", exc.cause)
                await asyncio.sleep(0.5)

    async def _append_one(self, job_id: str, event: ev.Event, expected_version: int | None) -> int:
        headers = {"Nats-Msg-Id": event.event_id}
        if expected_version is not None:
            headers.update(_expect(job_id, expected_version))
        try:
            ack = await self._js.publish(job_subject(job_id, self._source), ev.encode(event), headers=headers)
        except _TRANSIENT as exc:
            raise _StoreMoving(exc) from exc
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise ConcurrencyConflict(job_id, expected_version or 0) from exc
            raise DependencyUnavailable(f"JetStream refused an event: {exc}") from exc
        except nats.errors.Error as exc:
            raise DependencyUnavailable(f"JetStream did not store an event: {exc!r}") from exc
        # A duplicate ack carries the sequence of the copy stored first.
        return int(ack.seq)

    async def _append_batch(self, job_id: str, events: Sequence[ev.Event], expected: int | None) -> int:
        """All events or none (JetStream's atomic batch): a decision is never stored in part."""
        subject, batch_id = job_subject(job_id, self._source), uuid.uuid4().hex
        try:
            for n, event in enumerate(events, 1):
                headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(n),
                           "Nats-Msg-Id": event.event_id}
                if n == 1 and expected is not None:
                    headers.update(_expect(job_id, expected))
                if n < len(events):
                    # Only the commit is acknowledged; the server answers for the whole batch.
                    await self._nc.publish(subject, ev.encode(event), headers=headers)
                    continue
                headers["Nats-Batch-Commit"] = "1"
                reply = await self._nc.request(subject, ev.encode(event), headers=headers,
                                               timeout=self._timeout)
        except _TRANSIENT as exc:
            raise _StoreMoving(exc) from exc
        except nats.errors.Error as exc:
            raise DependencyUnavailable(f"JetStream did not store the events: {exc!r}") from exc
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error is None:
            return int(answer["seq"])
        if error.get("err_code") == WRONG_LAST_SEQUENCE:
            raise ConcurrencyConflict(job_id, expected or 0)
        if error.get("err_code") == BATCH_ALREADY_STORED:
            # A retry of a batch that went in: answer as the first attempt would have.
            stored = await self._stored_seq(job_id, events[-1].event_id)
            if stored is not None:
                return stored
        raise DependencyUnavailable(f"JetStream refused the events: {error.get('description', error)}")

    async def _stored_seq(self, job_id: str, event_id: str) -> int | None:
        return next((s for s, e in await self.read_job(job_id) if e.event_id == event_id), None)

    async def read_job(self, job_id: str, from_seq: int = 1) -> list[tuple[int, ev.AnyEvent]]:
        found: list[tuple[int, ev.AnyEvent]] = []
        seq = max(1, from_seq)
        while True:
            try:
                msg = await self._js.get_msg(STREAM, seq=seq, subject=job_subjects(job_id), next=True)
            except nats.js.errors.NotFoundError:
                return found
            except (TimeoutError, nats.errors.Error) as exc:
                raise DependencyUnavailable(f"cannot read job {job_id} from JetStream: {exc!r}") from exc
            assert msg.seq is not None and msg.data is not None
            event = _decode_or_skip(msg.data, msg.seq, msg.subject or "")
            if event is not None:
                found.append((msg.seq, event))
            seq = msg.seq + 1

    async def last_seq(self) -> int:
        try:
            info = await self._js.stream_info(STREAM)
        except (TimeoutError, nats.errors.Error) as exc:
            raise DependencyUnavailable(f"cannot read stream {STREAM}: {exc!r}") from exc
        # A purged stream keeps its last sequence but holds nothing to wait for.
        return info.state.last_seq if info.state.messages else 0

    async def batches(
        self, after_seq: int, max_batch: int = 500
    ) -> AsyncIterator[list[tuple[int, ev.AnyEvent]]]:
        if after_seq > 0:
            policy = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": after_seq + 1}
        else:
            policy = {"deliver_policy": DeliverPolicy.ALL}
        config = ConsumerConfig(**policy)  # type: ignore[arg-type]
        sub = await self._follow(config, after_seq)
        delivered = [after_seq]  # the last stream sequence this subscription delivered
        try:
            while True:
                yield await self._next_batch(sub, max_batch, delivered)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _follow(self, config: ConsumerConfig, after_seq: int) -> Any:
        """An ordered consumer: no server-side state to clean up, gaps are re-fetched by nats-py.

        Its server dying (a NATS cluster losing one) stops the heartbeats; nats-py then makes
        the consumer again on a live server, from the last sequence delivered."""
        try:
            sub = await self._js.subscribe(ALL_SUBJECTS, ordered_consumer=True, config=config,
                                           idle_heartbeat=FOLLOW_HEARTBEAT)
        except (TimeoutError, nats.errors.Error) as exc:
            raise DependencyUnavailable(f"cannot follow stream {STREAM}: {exc!r}") from exc
        jsi = getattr(sub, "_jsi", None)
        if jsi is not None and getattr(jsi, "_sseq", None) == 0:
            # nats-py resumes from its last delivered sequence, 0 until one arrives: without
            # this, a consumer made again before the first event would replay the whole stream.
            jsi._sseq = after_seq
        return sub

    async def _next_batch(self, sub: Any, max_batch: int,
                          delivered: list[int]) -> list[tuple[int, ev.AnyEvent]]:
        batch: list[tuple[int, ev.AnyEvent]] = []
        try:
            msg = await self._first_of_batch(sub, delivered)
            while True:
                meta = msg.metadata
                delivered[0] = meta.sequence.stream
                decoded = _decode_or_skip(msg.data, meta.sequence.stream, msg.subject)
                if decoded is not None:
                    batch.append((meta.sequence.stream, decoded))
                if meta.num_pending == 0 or len(batch) >= max_batch:
                    return batch
                msg = await sub.next_msg(timeout=10)
        except (TimeoutError, nats.errors.Error) as exc:
            # Events announced but not delivered: the follower starts again from what it has.
            raise DependencyUnavailable(f"following stream {STREAM} stalled: {exc!r}") from exc

    async def _first_of_batch(self, sub: Any, delivered: list[int]) -> Any:
        """The next message, however long the stream stays quiet; DependencyUnavailable if the
        subscription stopped delivering what the stream stores.

        nats-py makes an ordered consumer again when its heartbeats stop, but if JetStream is
        unavailable at that moment (a server of the cluster just died) it gives up without a
        word: events are stored and never arrive. Quiet twice in a row while the stream moved
        on past what was delivered is that, not a message on its way.
        """
        behind = 0
        while True:
            try:
                return await sub.next_msg(timeout=STALL_CHECK)
            except nats.errors.TimeoutError:
                _unless_cancelled()
                try:
                    stored = await self.last_seq()
                except DependencyUnavailable:  # JetStream busy electing, say: not known to be behind
                    _unless_cancelled()
                    stored = delivered[0]
                behind = behind + 1 if stored > delivered[0] else 0
                if behind >= 2:
                    raise DependencyUnavailable(
                        f"following stream {STREAM} stalled after sequence {delivered[0]}") from None

    async def consume(self, durable: str, handler: Handler, stop: asyncio.Event, *,
                      concurrency: int = 1) -> None:
        config = ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT, max_deliver=-1,
            deliver_policy=DeliverPolicy.ALL,
        )
        sub = await self._durable(durable, config, stop)
        lanes = Lanes(concurrency)
        tickers: set[asyncio.Task[None]] = set()
        backlog = 0  # events stored that this consumer has not been handed yet
        try:
            while sub is not None and not stop.is_set():
                # One event at a time unless a backlog waits: nats-py's fetch of several goes on
                # collecting after the first until its timeout, and the first would wait with it.
                # Nor more than can start at once: fetched events never wait for a lane.
                batch = max(1, min(backlog, FETCH_BATCH, await lanes.room()))
                try:
                    msgs = await sub.fetch(batch, timeout=1 if batch == 1 else BACKLOG_WAIT)
                except (TimeoutError, nats.errors.TimeoutError):
                    backlog = 0
                    continue
                except nats.errors.Error as exc:
                    log.warning("consumer %s: fetch failed (%r); retrying", durable, exc)
                    await asyncio.sleep(1)
                    continue
                for msg in msgs:
                    # In hand from now on: the server hears so until it is handled (_handle_one).
                    ticking = asyncio.create_task(_in_progress(msg))
                    tickers.add(ticking)
                    ticking.add_done_callback(tickers.discard)
                    # One job's events in order, different jobs' at once.
                    await lanes.start(msg.subject.rsplit(".", 1)[0],
                                      functools.partial(_handle_one, durable, handler, msg, ticking))
                backlog = msgs[-1].metadata.num_pending if msgs else 0
            await lanes.drain()
        finally:
            await lanes.cancel()
            for ticking in list(tickers):
                ticking.cancel()
            if sub is not None:
                # Its last fetch may still be waiting on the server: the connection can drain at once.
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()

    async def consumer_pending(self, durable: str) -> int:
        """Events durable consumer `durable` has not acknowledged yet: not delivered, or not acked."""
        try:
            info = await self._js.consumer_info(STREAM, durable)
        except (TimeoutError, nats.errors.Error) as exc:
            raise DependencyUnavailable(f"cannot read consumer {durable}: {exc!r}") from exc
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def _durable(self, durable: str, config: ConsumerConfig, stop: asyncio.Event) -> Any:
        """The durable consumer's subscription, once JetStream answers (it may be electing a
        leader, as just after a server died); None if `stop` is set first."""
        # As pull_subscribe would make it. Made here, not there: pull_subscribe leaves a consumer
        # that exists as it is, and one an earlier version made must take the settings of today's
        # (the server updates what may change, such as ack_wait).
        config = dataclasses.replace(config, name=durable, durable_name=durable, filter_subject=ALL_SUBJECTS)
        while not stop.is_set():
            try:
                await self._js.add_consumer(STREAM, config)
                return await self._js.pull_subscribe(ALL_SUBJECTS, durable=durable, stream=STREAM)
            except _TRANSIENT as exc:
                log.warning("consumer %s: JetStream did not answer (%r); retrying", durable, exc)
                await asyncio.sleep(1)
            except nats.errors.Error as exc:
                raise DependencyUnavailable(f"consumer {durable} refused: {exc!r}") from exc
        return None


async def _handle_one(durable: str, handler: Handler, msg: Any, ticking: asyncio.Task[None]) -> None:
    """Hand one event to `handler`; acknowledged once handled, redelivered after 2 s if it raised.

    From its fetch until then, `ticking` tells the server every ACK_WAIT/3 s that it is in
    progress: an event whose consumer fell silent (its node dropped off the network) goes to
    another replica after ACK_WAIT seconds, however long a live handler or its lane takes."""
    seq = 0
    try:
        seq = msg.metadata.sequence.stream
        event = _decode_or_skip(msg.data, seq, msg.subject)
        if event is not None:
            # Whatever the handler logs names the job (JSON logs).
            with about_job(event.job_id):
                # A handler that hangs would hold its event, and its lane, for good.
                async with asyncio.timeout(MAX_IN_PROGRESS):
                    await handler(seq, event)
    except Exception:
        log.exception("consumer %s: handler failed on event %d; redelivering", durable, seq)
        with contextlib.suppress(nats.errors.Error):
            await msg.nak(delay=2)
        return
    finally:
        ticking.cancel()
    with contextlib.suppress(nats.errors.Error):
        # A lost ack only means the event comes again: handlers are idempotent.
        await msg.ack()


def _unless_cancelled() -> None:
    """nats-py turns a cancellation during a request into a timeout: a loop that waits on after
    timeouts must not swallow it, or the task can never be stopped."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _in_progress(msg: Any) -> None:
    while True:
        await asyncio.sleep(ACK_WAIT / 3)
        with contextlib.suppress(nats.errors.Error):
            await msg.in_progress()


def _expect(job_id: str, version: int) -> dict[str, str]:
    return {EXPECTED_LAST: str(version), EXPECTED_LAST_SUBJECT: job_subjects(job_id)}


def _decode_or_skip(data: bytes, seq: int, subject: str = "") -> ev.AnyEvent | None:
    try:
        event = ev.decode(data)
    except msgspec.DecodeError:
        # A newer version's event type, or garbage: skipping is safer than stopping the fold.
        log.error("event %d cannot be decoded; skipped", seq)
        return None
    if not may_say(source_of(subject), event):
        log.error("event %d: %s may not append %s; skipped", seq, source_of(subject), type(event).__name__)
        return None
    return event


# What a gateway agent may say, and only of its own gateway. NATS lets it publish only on its own
# subject; this keeps it from putting other services' decisions (JobEnded, PortsAssigned) there.
GATEWAY_EVENTS = (ev.PortsForwarded, ev.PortsUnavailable, ev.ForwardsRemoved, ev.PortOpen, ev.PortClosed,
                  ev.SessionActivity)


def gateway_identity(label: str) -> str:
    """The identity (and subject token) of gateway `label`'s agent; a subject token holds no dot."""
    return "gateway-" + label.replace(".", "_")


def may_say(source: str, event: ev.AnyEvent) -> bool:
    if not source.startswith("gateway-"):
        return True
    gateway = getattr(event, "gateway", None)
    return isinstance(event, GATEWAY_EVENTS) and (gateway is None or gateway_identity(gateway) == source)
