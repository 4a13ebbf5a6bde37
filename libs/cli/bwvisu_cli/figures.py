"""Where each process of `bwvisu up` serves its Prometheus metrics, and the headline figures
`bwvisu status` reads from them (parsed with prometheus-client's own text parser)."""

from __future__ import annotations

import math
import ssl
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bwvisu_common.metrics import PATH
from bwvisu_common.settings import Settings, gateway_metrics_host

FETCH_TIMEOUT = 2.0


def _url(host: str, port: int, scheme: str = "http") -> str:
    if not port:
        return ""
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # a wildcard listens on loopback too
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}{PATH}"


def metrics_urls(settings: Settings) -> dict[str, str]:
    """Every process `bwvisu up` may run, by its name there, and the URL of its /metrics."""
    m, api = settings.metrics, settings.runner_api
    urls = {
        "bwvisu up": _url(m.host, m.up_port),
        "projector": _url(m.host, m.projector_port),
        "scheduler-adapter": _url(m.host, m.scheduler_adapter_port),
        "keyhole-api": _url(settings.keyhole_api.host, settings.keyhole_api.port),
        "runner-api": _url(api.host, api.port, "https" if api.tls_cert else "http"),
        "web": _url(settings.web.host, settings.web.port),
    }
    for gw in settings.gateway_nodes:
        urls[f"gateway-agent-{gw.label}"] = _url(gateway_metrics_host(settings, gw), m.gateway_agent_port)
    return urls


class Supervised(Protocol):
    """What Restarts reads of a child of `bwvisu up`."""

    name: str
    restarts: int


class Restarts:
    """`bwvisu_restarts_total{process}`: how often `bwvisu up` started a child again after it died."""

    def __init__(self, children: Sequence[Supervised]) -> None:
        self._children = children

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("bwvisu_restarts", "Children of `bwvisu up` started again after "
                                     "they died", labels=["process"])
        for child in self._children:
            family.add_metric([str(child.name)], int(child.restarts))
        yield family


def fetch(url: str) -> list[Sample] | str:
    """The samples at `url`, or why they could not be read."""
    # Only counts and timings are read: a demo's self-signed runner-api certificate is no reason to fail.
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT, context=context) as answer:  # noqa: S310
            text = answer.read().decode()
    except (OSError, ValueError) as exc:
        return f"cannot read: {exc}"
    try:
        return [s for family in text_string_to_metric_families(text) for s in family.samples]
    except ValueError as exc:
        return f"not Prometheus' text format: {exc}"


def fetch_all(urls: dict[str, str]) -> dict[str, list[Sample] | str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = pool.map(fetch, urls.values())
        return dict(zip(urls, found, strict=True))


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """The q-quantile of a histogram from its cumulative (upper bound, count) buckets, interpolated
    within a bucket as Prometheus' histogram_quantile does; NaN without observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return math.nan
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all that is known
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


@dataclass
class Headline:
    """The figures `bwvisu status` prints, summed over every process that reports them."""

    jobs: dict[str, float] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)  # "<process>/<consumer>" -> events
    submit_buckets: dict[float, float] = field(default_factory=dict)
    squeue: tuple[float, float] = (0.0, 0.0)  # sum of cycle seconds, cycles
    squeue_lines: float | None = None
    forwards: dict[str, float] = field(default_factory=dict)
    restarts: float = 0.0

    def add(self, process: str, samples: Iterable[Sample]) -> None:
        for s in samples:
            name, labels = s.name, s.labels
            if name == "bwvisu_jobs":
                self.jobs[labels["state"]] = max(self.jobs.get(labels["state"], 0.0), s.value)
            elif name == "bwvisu_event_lag_events":
                self.lag[f"{process}/{labels['consumer']}"] = s.value
            elif name == "bwvisu_submit_duration_seconds_bucket":
                le = float(labels["le"])
                self.submit_buckets[le] = self.submit_buckets.get(le, 0.0) + s.value
            elif name == "bwvisu_squeue_cycle_duration_seconds_sum":
                self.squeue = (self.squeue[0] + s.value, self.squeue[1])
            elif name == "bwvisu_squeue_cycle_duration_seconds_count":
                self.squeue = (self.squeue[0], self.squeue[1] + s.value)
            elif name == "bwvisu_squeue_lines":
                self.squeue_lines = s.value
            elif name == "bwvisu_gateway_forwards":
                self.forwards[labels["gateway"]] = s.value
            elif name == "bwvisu_restarts_total":
                self.restarts += s.value

    def lines(self) -> list[str]:
        said = []
        if self.jobs:
            said.append("jobs: " + ", ".join(f"{n:.0f} {state}" for state, n in self.jobs.items()))
        if self.lag:
            worst = max(self.lag, key=lambda k: self.lag[k])
            said.append(f"event lag: at most {self.lag[worst]:.0f} event(s) ({worst})")
        count = max(self.submit_buckets.values(), default=0.0)
        if count:
            buckets = list(self.submit_buckets.items())
            said.append(f"submit: p50 {_ms(quantile(0.5, buckets))}, p95 {_ms(quantile(0.95, buckets))} "
                        f"over {count:.0f} submission(s)")
        if self.squeue[1]:
            lines = f", {self.squeue_lines:.0f} line(s) last" if self.squeue_lines is not None else ""
            said.append(f"squeue: {_ms(self.squeue[0] / self.squeue[1])} per cycle on average, "
                        f"{self.squeue[1]:.0f} cycle(s){lines}")
        if self.forwards:
            on = sorted(self.forwards.items())
            said.append("forwards: " + ", ".join(f"{n:.0f} on {gw}" for gw, n in on))
        said.append(f"restarts: {self.restarts:.0f}")
        return said


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def report(status: dict[str, object]) -> list[str]:
    """`bwvisu status`'s lines on metrics, from `bwvisu up`'s status file: where each process serves
    them (and whether it answers), then the headline figures read there."""
    processes = status.get("processes")
    urls = {str(p["name"]): str(p.get("metrics") or "")
            for p in (processes if isinstance(processes, list) else [])}
    urls = {"bwvisu up": str(status.get("metrics") or ""), **urls}
    urls = {name: url for name, url in urls.items() if url}
    if not urls:
        return []
    found = fetch_all(urls)
    lines = ["  metrics (Prometheus):"]
    headline = Headline()
    for name, url in urls.items():
        samples = found[name]
        lines.append(f"    {name:<18} {url}" + (f"  {samples}" if isinstance(samples, str) else ""))
        if not isinstance(samples, str):
            headline.add(name, samples)
    return lines + ["  figures:"] + [f"    {line}" for line in headline.lines()]
