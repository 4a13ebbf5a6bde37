"""Which forwards to probe now, and what a probe's answer means (PortOpen / PortClosed). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView
from gateway_agent.domain.rules import ForwardRule

PortKey = tuple[str, int]  # (job id, external port)


@dataclass(frozen=True)
class Timing:
    fast_probe: float = 0.15  # while a job waits for its application
    slow_probe: float = 2.0  # once it answers
    probe_timeout: float = 0.5


@dataclass
class ProbeBook:
    """The last reported state and the last probe time of each forwarded port."""

    timing: Timing = field(default_factory=Timing)
    is_open: dict[PortKey, bool] = field(default_factory=dict)
    last_probe: dict[PortKey, float] = field(default_factory=dict)

    def due(self, forwards: Mapping[str, Sequence[ForwardRule]], views: Mapping[str, JobView | None],
            now: float, gateway: str = "") -> list[tuple[PortKey, ForwardRule]]:
        """The forwards of running jobs to probe at `now` (often while closed, seldom once open).

        What the log last said counts only if it was said of this `gateway`'s forwards: a job that
        just moved here may still show its old gateway's open port, with the same number.
        """
        found = []
        for job_id, rules in forwards.items():
            view = views.get(job_id)
            if view is None or view.state not in (JobState.RUNNING, JobState.AVAILABLE):
                continue
            for rule in rules:
                key = (job_id, rule.external_port)
                if key not in self.is_open:
                    # What the log last said (a restarted agent does not report it again).
                    self.is_open[key] = any(s.open for s in view.services
                                            if s.external_port == rule.external_port
                                            and (not gateway or s.gateway == gateway))
                interval = self.timing.slow_probe if self.is_open[key] else self.timing.fast_probe
                if now - self.last_probe.get(key, 0.0) >= interval - 0.01:
                    self.last_probe[key] = now
                    found.append((key, rule))
        return found

    def answer(self, key: PortKey, is_open: bool, gateway: str) -> ev.PortOpen | ev.PortClosed | None:
        """The event a probe's answer calls for: only a change is reported."""
        if is_open == self.is_open.get(key):
            return None
        self.is_open[key] = is_open
        cls = ev.PortOpen if is_open else ev.PortClosed
        return cls(job_id=key[0], external_port=key[1], gateway=gateway)

    def keep_only(self, live: set[PortKey]) -> None:
        """Forget forwards that are gone."""
        for key in set(self.is_open) - live:
            self.is_open.pop(key, None)
            self.last_probe.pop(key, None)
