"""What `bwvisu status` says of metrics: where each process serves them, and the headline figures
read there with prometheus-client's parser (quantiles as Prometheus' histogram_quantile computes them)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bwvisu_cli.figures import Headline, Restarts, metrics_urls, quantile, report
from bwvisu_cli.servers import free_port
from bwvisu_common.settings import Settings, parse_settings


def settings(**extra: object) -> Settings:
    return parse_settings(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.2"}],
        "gateway-nodes": [{"name": "gw0", "internal-ip": "10.0.0.9", "external-ip": "1.2.3.4",
                           "metrics-host": "10.0.0.9"},
                          {"name": "gw1", "internal-ip": "10.0.0.10", "external-ip": "1.2.3.5"}],
        **extra,
    }).encode())


def test_every_process_has_its_metrics_address() -> None:
    urls = metrics_urls(settings(**{"web": {"host": "0.0.0.0", "port": 8080},
                                    "runner-api": {"tls-cert": "c.pem", "tls-key": "k.pem"},
                                    "metrics": {"host": "10.0.0.5", "projector-port": 0}}))
    assert urls == {
        "bwvisu up": "http://10.0.0.5:9460/metrics",
        "projector": "",  # port 0: not served
        "scheduler-adapter": "http://10.0.0.5:9462/metrics",
        "keyhole-api": "http://127.0.0.1:4243/metrics",
        "runner-api": "https://127.0.0.1:4242/metrics",
        "web": "http://127.0.0.1:8080/metrics",  # a wildcard answers on loopback
        "gateway-agent-gw0": "http://10.0.0.9:9463/metrics",
        "gateway-agent-gw1": "http://10.0.0.5:9463/metrics",
    }


def test_a_metrics_port_out_of_range_is_a_config_error() -> None:
    from bwvisu_common.errors import ConfigError

    with pytest.raises(ConfigError, match="metrics.projector-port"):
        settings(metrics={"projector-port": 70000})


@pytest.mark.parametrize(("q", "expected"), [
    (0.5, 0.08),  # rank 5 of 10: 3 of the 5 observations of (0.05, 0.1] in
    (0.2, 0.05),  # rank 2: the end of the first bucket
    (0.95, 0.225),  # rank 9.5: 2.5 of the 3 of (0.1, 0.25] in
])
def test_quantiles_interpolate_within_a_bucket_as_prometheus_does(q: float, expected: float) -> None:
    buckets = [(0.05, 2.0), (0.1, 7.0), (0.25, 10.0), (math.inf, 10.0)]
    assert quantile(q, buckets) == pytest.approx(expected)


def test_a_quantile_beyond_the_last_bound_is_that_bound_and_none_without_observations() -> None:
    assert quantile(0.99, [(0.1, 1.0), (math.inf, 10.0)]) == 0.1
    assert math.isnan(quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
    assert math.isnan(quantile(0.5, []))


EXPOSITION = """\
# TYPE bwvisu_jobs gauge
bwvisu_jobs{state="submitted"} 1
bwvisu_jobs{state="running"} 3
# TYPE bwvisu_event_lag_events gauge
bwvisu_event_lag_events{consumer="read-model"} 0
# TYPE bwvisu_submit_duration_seconds histogram
bwvisu_submit_duration_seconds_bucket{le="0.05"} 2
bwvisu_submit_duration_seconds_bucket{le="0.1"} 7
bwvisu_submit_duration_seconds_bucket{le="+Inf"} 10
bwvisu_submit_duration_seconds_count 10
bwvisu_submit_duration_seconds_sum 1.1
# TYPE bwvisu_squeue_cycle_duration_seconds histogram
bwvisu_squeue_cycle_duration_seconds_count 4
bwvisu_squeue_cycle_duration_seconds_sum 0.2
# TYPE bwvisu_squeue_lines gauge
bwvisu_squeue_lines 1200
# TYPE bwvisu_gateway_forwards gauge
bwvisu_gateway_forwards{gateway="gw0"} 6
"""


def _samples(text: str) -> list:  # type: ignore[type-arg]
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def test_the_headline_sums_up_what_the_processes_report() -> None:
    headline = Headline()
    headline.add("projector", _samples(EXPOSITION))
    headline.add("web", _samples('bwvisu_event_lag_events{consumer="read-model"} 12\n'))
    headline.add("bwvisu up", _samples('bwvisu_restarts_total{process="web"} 2\n'))
    assert headline.lines() == [
        "jobs: 1 submitted, 3 running",
        "event lag: at most 12 event(s) (web/read-model)",
        "submit: p50 80 ms, p95 100 ms over 10 submission(s)",
        "squeue: 50 ms per cycle on average, 4 cycle(s), 1200 line(s) last",
        "forwards: 6 on gw0",
        "restarts: 2",
    ]


@dataclass
class _Child:
    name: str
    restarts: int


def test_bwvisu_up_counts_each_child_s_restarts() -> None:
    children = [_Child("nats-server", 0), _Child("web", 0)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Restarts(children))
    children[1].restarts = 3
    found = {s.labels["process"]: s.value for s in _samples(generate_latest(registry).decode())
             if s.name == "bwvisu_restarts_total"}
    assert found == {"nats-server": 0, "web": 3}


def test_status_lists_each_address_and_says_which_cannot_be_read() -> None:
    gone = f"http://127.0.0.1:{free_port()}/metrics"
    lines = report({"metrics": "", "processes": [{"name": "web", "metrics": gone},
                                                 {"name": "nats-server", "metrics": ""}]})
    assert lines[0] == "  metrics (Prometheus):"
    assert lines[1].startswith(f"    web                {gone}  cannot read:")
    assert not any("nats-server" in line for line in lines), "nothing served, nothing listed"
    assert lines[-1] == "    restarts: 0"
