"""What the agent accepts to forward: an assignment must fit the job and the site's limits. Pure.

keyhole-api checks a job's request before it assigns ports, but the gateway acts on whatever
the stream says: a forged or buggy PortsAssigned must not point the gateway at a host that is
not the job's, nor take ports outside the range the site gave bwvisu.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bwvisu_common import events as ev

_SHOWN = 64  # characters of a name from the stream that a reason or log line shows


@dataclass(frozen=True)
class Limits:
    """The site's limits on forwards (keyholed-port-range, keyholed-max-forwarders-per-job)."""

    port_min: int = 1
    port_max: int = 65535
    max_forwards: int = 64
    node_suffix: str = ""  # forwarding-hostname-suffix: keyhole requests name nodes with it


def shown(names: Iterable[str]) -> str:
    """Names from a request, safe for a log line or a reason: quoted, escaped, cut short."""
    return ", ".join(repr(n[:_SHOWN]) for n in names)


def job_nodes(history: Sequence[ev.Event]) -> list[str] | None:
    """The Slurm nodes the job runs on (its last JobStarted), None before it started."""
    started = [e for e in history if isinstance(e, ev.JobStarted)]
    return list(started[-1].nodes) if started else None


def refusal(nodes: Sequence[str], forwards: Sequence[ev.Forward], history: Sequence[ev.Event],
            limits: Limits) -> str | None:
    """Why these forwards to these nodes must not be installed for the job; None if they fit."""
    mine = job_nodes(history)
    if mine is None:
        return "the job has not started: it has no nodes to forward to"
    allowed = {n + limits.node_suffix for n in mine}
    strangers = [n for n in nodes if n not in allowed]
    if strangers:
        return f"nodes not the job's: {shown(strangers)} (the job runs on {shown(sorted(allowed))})"
    if not nodes or len(set(nodes)) != len(nodes):
        return "no nodes, or a node twice"
    if not forwards:
        return "no ports to forward"
    if len(forwards) > limits.max_forwards:
        return f"{len(forwards)} forwards, at most {limits.max_forwards} per job"
    outside = sorted({p for f in forwards for p in (f.external_port, f.internal_port)
                      if not limits.port_min <= p <= limits.port_max})
    if outside:
        return (f"port(s) {', '.join(map(str, outside))} outside the port range "
                f"{limits.port_min}-{limits.port_max}")
    externals = [f.external_port for f in forwards]
    if len(set(externals)) != len(externals):
        return "an external port twice"
    return None
