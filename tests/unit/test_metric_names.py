"""Every metric bwvisu defines follows Prometheus' naming guide, is documented in the README and shown
on the Grafana dashboard, and the dashboard asks for no metric that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY

import gateway_agent.adapters.iptables  # noqa: F401  (defines its metrics on import)
import keyhole_api.app  # noqa: F401
import runner_api.handlers  # noqa: F401
import scheduler_adapter.adapters.ssh  # noqa: F401
import scheduler_adapter.watcher  # noqa: F401
import web_portal.handlers.auth  # noqa: F401
from bwvisu_cli.figures import Restarts
from bwvisu_common.metrics import JobStates, lag_family
from tests.samples import dashboard_queries

ROOT = Path(__file__).resolve().parents[2]
# Read from live objects at scrape time (not in the default registry until a process adds them).
GATEWAY_FORWARDS = ("bwvisu_gateway_forwards", "gauge")


def defined() -> dict[str, str]:
    """Every bwvisu metric as a query names it (counters with `_total`), with its type."""
    families = [*REGISTRY.collect(), *JobStates(list).collect(), lag_family({}), *Restarts([]).collect()]
    found = {f.name + ("_total" if f.type == "counter" else ""): f.type
             for f in families if f.name.startswith("bwvisu_")}
    return {**found, GATEWAY_FORWARDS[0]: GATEWAY_FORWARDS[1]}


def test_the_names_follow_prometheus_naming_guide() -> None:
    names = defined()
    assert len(names) == 13, sorted(names)
    for name, kind in names.items():
        assert re.fullmatch(r"bwvisu_[a-z]+(_[a-z]+)*", name), name
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), f"{name}: durations in seconds"
        if kind == "gauge":
            assert not name.endswith("_total"), name


def test_the_readme_lists_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(bwvisu_[a-z_]+)", section, re.MULTILINE))
    assert listed == set(defined())


def test_the_dashboard_shows_every_metric_and_only_those_that_exist() -> None:
    used = {re.sub(r"_(bucket|sum|count)$", "", name)
            for expr in dashboard_queries() for name in re.findall(r"bwvisu_[a-z_]+", expr)}
    assert used == set(defined())
