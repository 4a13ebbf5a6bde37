"""Prometheus metrics (prometheus-client): what every bwvisu process serves on `/metrics`.

Names follow Prometheus' naming guide: `bwvisu_` first, the unit last (`_seconds`), counters end
in `_total`. A service defines its own counters and histograms next to what they measure, at
module level (prometheus-client's default registry, which also holds the process's CPU, memory
and start time). Figures read from a live object at scrape time (jobs by state, event lag) are
collectors of one process, added to its `ProcessMetrics`; what needs I/O first (the stream's last
sequence) is fetched by a sampler just before each scrape, never on a timer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bwvisu_common.errors import BwvisuError
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.read_model import JobView

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Sampler = Callable[[], Awaitable[None]]

PATH = "/metrics"
# A scrape waits this long for its samplers; a sampler that takes longer leaves its figure out.
SAMPLE_TIMEOUT = 2.0
SAMPLE_EVERY = 5.0  # seconds a sampled figure is served before it is sampled again
# Seconds from a second to ten minutes: a job start or a submission on a busy cluster.
SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

TIME_TO_AVAILABLE = Histogram(
    "bwvisu_time_to_available_seconds",
    "From a job's submission (JobSubmitted) to its application answering on every forwarded port (PortOpen)",
    buckets=SLOW_BUCKETS)


def timed(histogram: Histogram) -> Callable[[Callable[P, Coroutine[Any, Any, T]]],
                                            Callable[P, Coroutine[Any, Any, T]]]:
    """Decorate a coroutine function: the duration of each call, returned or raised, goes to `histogram`
    (prometheus-client's own `time()` decorator times only the creation of a coroutine)."""

    def decorate(work: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(work)
        async def timed_work(*args: P.args, **kwargs: P.kwargs) -> T:
            start = time.perf_counter()
            try:
                return await work(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - start)

        return timed_work

    return decorate


class _Shared:
    """Every module-level metric of this Python process (prometheus-client's default registry)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class ProcessMetrics:
    """What one process serves on /metrics: the module-level metrics, plus collectors of its own objects."""

    def __init__(self, sample_every: float = SAMPLE_EVERY) -> None:
        self._sample_every = sample_every
        # Not the default registry: two services in one test process each show only their own objects.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Shared())
        self._samplers: list[Sampler] = []
        self._sampling = asyncio.Lock()
        self._sampled_at = float("-inf")

    def add(self, collector: Collector, sampler: Sampler | None = None) -> None:
        """Serve `collector`'s figures; `sampler` (if any) refreshes what it reads before each scrape."""
        self.registry.register(collector)
        if sampler is not None:
            self._samplers.append(sampler)

    async def render(self) -> bytes:
        """The text exposition format, after every sampler had its turn (at most once every
        SAMPLE_EVERY seconds: /metrics is served without a login, and a flood of scrapes must
        not become a flood of JetStream requests)."""
        async with self._sampling:
            now = time.monotonic()
            if now - self._sampled_at >= self._sample_every:
                self._sampled_at = now
                await asyncio.gather(*(self._sample(s) for s in self._samplers))
        return generate_latest(self.registry)

    async def _sample(self, sampler: Sampler) -> None:
        try:
            await asyncio.wait_for(sampler(), SAMPLE_TIMEOUT)
        except (BwvisuError, TimeoutError) as exc:
            log.debug("metrics: a sampler failed (%r); its figure is left out", exc)

    async def endpoint(self, request: Request) -> Response:
        return Response(await self.render(), media_type=CONTENT_TYPE_LATEST)

    def mount(self, app: Any) -> None:
        """Add GET /metrics to a FastAPI (or Starlette) app, outside its docs and its auth."""
        if not any(getattr(route, "path", None) == PATH for route in app.router.routes):
            app.router.add_route(PATH, self.endpoint, methods=["GET"], include_in_schema=False)

    def app(self) -> Starlette:
        """An app that serves /metrics only: for a process without an HTTP server of its own."""
        return Starlette(routes=[Route(PATH, self.endpoint, methods=["GET"])])


class ReadModelLag:
    """`bwvisu_event_lag_events{consumer="read-model"}`: events in the stream this process's read
    model has not applied yet (the stream's last sequence, read at scrape time, minus its own)."""

    def __init__(self, live: LiveJobs, last_seq: Callable[[], Awaitable[int]]) -> None:
        self._live = live
        self._last_seq = last_seq
        self._stream: int | None = None

    async def sample(self) -> None:
        self._stream = None  # unknown unless the stream answers now
        self._stream = await self._last_seq()

    def collect(self) -> Iterator[Metric]:
        if self._stream is None:
            return
        yield lag_family({"read-model": max(0, self._stream - self._live.seq)})


class ConsumerLag:
    """`bwvisu_event_lag_events{consumer=<durable>}`: events a durable consumer has not acknowledged."""

    def __init__(self, durable: str, pending: Callable[[str], Awaitable[int]]) -> None:
        self._durable = durable
        self._pending = pending
        self._lag: int | None = None

    async def sample(self) -> None:
        self._lag = None
        self._lag = await self._pending(self._durable)

    def collect(self) -> Iterator[Metric]:
        if self._lag is not None:
            yield lag_family({self._durable: self._lag})


def lag_family(lags: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "bwvisu_event_lag_events", "Events in the job event stream that a reader has not applied yet",
        labels=["consumer"])
    for consumer, lag in lags.items():
        family.add_metric([consumer], lag)
    return family


def count_states(jobs: Iterable[JobView]) -> dict[str, int]:
    """How many jobs are in each state, every state named (0 too, so that graphs fall to zero)."""
    counts = {state.value: 0 for state in JobState}
    for job in jobs:
        counts[job.state.value] += 1
    return counts


class JobStates:
    """`bwvisu_jobs{state}`: the jobs the read model holds, by state (the projector's)."""

    def __init__(self, jobs: Callable[[], Iterable[JobView]]) -> None:
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("bwvisu_jobs", "Jobs in the read model by state", labels=["state"])
        for state, count in count_states(self._jobs()).items():
            family.add_metric([state], count)
        yield family


def note_availability(before: JobView | None, after: JobView) -> None:
    """Observe the time to available the first time a job becomes available (a later PortOpen after a
    port closed or a gateway moved is not a new start)."""
    if after.available_at is None or (before is not None and before.available_at is not None):
        return
    if after.submitted_at is not None:
        TIME_TO_AVAILABLE.observe(max(0.0, (after.available_at - after.submitted_at).total_seconds()))
