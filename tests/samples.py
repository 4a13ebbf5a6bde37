"""Metrics in tests: a module-level metric's value now (compared before and after what it counts), and
the Grafana dashboard's queries."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import REGISTRY

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "bwvisu.json"


def sample(name: str, **labels: str) -> float:
    """The value of one sample in this process's default registry (0 before its first observation)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def dashboard_queries() -> list[str]:
    """Every PromQL query of deploy/grafana/bwvisu.json, with Grafana's variables in it."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


# A config section that keeps a test's processes off the metrics listeners' fixed ports (a demo on the
# same machine may hold them).
NO_METRICS_PORTS = {"up-port": 0, "projector-port": 0, "scheduler-adapter-port": 0, "gateway-agent-port": 0}
