"""Reading a module-level metric in a test: its value now, compared before and after what it counts."""

from __future__ import annotations

from prometheus_client import REGISTRY


def sample(name: str, **labels: str) -> float:
    """The value of one sample in this process's default registry (0 before its first observation)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
