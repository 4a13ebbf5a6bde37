"""A session's last activity from its forwards' traffic counters. Pure.

The counters are conntrack's, one entry per connection through the gateway (with accounting on,
each entry counts its packets): the DNAT rules' own counters would see only the first packet of
each connection, and an Xpra or Jupyter client keeps one connection open for hours. A forward
carried traffic since the last look when a connection to its external port is new, or counts a
different number of packets (more; or fewer: the same addresses and ports reused by a new
connection). A connection that is gone carried nothing new: its closing packets were counted while
it lingered (TIME_WAIT).

Each look is at most once per `grain` seconds, and what is reported is the look's time rounded
down to the grain: a job's activity changes at most once per grain, and only then is it appended.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

ConnKey = tuple[str, int, int]  # (client address, client port, the gateway's external port)
Counters = dict[ConnKey, int]  # connection -> packets both ways (UNCOUNTED: no counter)
# A connection made before accounting was on has no counter: while it lives it may carry anything,
# so it counts as traffic (unknown is not idle).
UNCOUNTED = -1


@dataclass(frozen=True)
class Connection:
    """One conntrack entry of a TCP connection to the gateway."""

    src: str
    sport: int
    dst: str
    dport: int
    packets: int = UNCOUNTED  # both directions; UNCOUNTED without conntrack accounting


def parse_conntrack(text: str) -> list[Connection]:
    """TCP connections in /proc/net/nf_conntrack's (or `conntrack -L`'s) lines; anything else is skipped."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if "tcp" not in words[:3]:
            continue
        fields: dict[str, str] = {}
        packets = UNCOUNTED
        for word in words:
            name, eq, value = word.partition("=")
            if not eq:
                continue
            if name == "packets" and value.isdigit():
                packets = max(packets, 0) + int(value)  # original and reply direction
            elif name not in fields:
                fields[name] = value  # the original direction comes first
        try:
            found.append(Connection(fields["src"], int(fields["sport"]), fields["dst"], int(fields["dport"]),
                                    packets))
        except (KeyError, ValueError):
            continue
    return found


def by_job(connections: Iterable[Connection], external_ip: str, ports: Mapping[int, str],
           own: Collection[str] = ()) -> dict[str, Counters]:
    """Each job's connections: those to `external_ip` on a port it forwards (`ports`: external port
    -> job). Connections the gateway makes itself (`own` addresses, e.g. its probes) do not count."""
    jobs: dict[str, Counters] = {}
    for c in connections:
        job = ports.get(c.dport) if c.dst == external_ip else None
        if job is not None and c.src not in own:
            jobs.setdefault(job, {})[(c.src, c.sport, c.dport)] = c.packets
    return jobs


def carried_traffic(before: Counters, after: Counters) -> bool:
    """Whether a forward's connections carried anything between two looks."""
    return any(packets == UNCOUNTED or key not in before or before[key] != packets
               for key, packets in after.items())


def rounded(at: datetime, grain: float) -> datetime:
    """`at` rounded down to a multiple of `grain` seconds (UTC)."""
    return datetime.fromtimestamp(at.timestamp() // grain * grain, UTC)


@dataclass
class ActivityBook:
    """What the agent last saw of each job's connections, and the activity it last reported."""

    grain: float = 60.0
    counters: dict[str, Counters] = field(default_factory=dict)
    reported: dict[str, datetime] = field(default_factory=dict)
    pending: dict[str, datetime] = field(default_factory=dict)  # to report, not confirmed appended yet
    looked: bool = False  # a first look only learns what there is: the agent may have just restarted

    def observe(self, seen: Mapping[str, Counters], jobs: Collection[str], now: datetime,
                known: Callable[[str], datetime | None]) -> dict[str, datetime]:
        """One look at the connections of `jobs` (those forwarded here now): the jobs whose activity
        to report, with its time (again, until `reported`). `known(job)`: what the log already holds."""
        at = rounded(now, self.grain)
        for job in jobs:
            after = dict(seen.get(job, {}))
            before = self.counters.get(job)
            self.counters[job] = after
            if (before is not None or self.looked) and carried_traffic(before or {}, after):
                last = max(filter(None, (self.reported.get(job), known(job))), default=None)
                if last is None or at > last:
                    self.pending[job] = at
        for gone in set(self.counters) - set(jobs):
            # Its forwards left this gateway (ended, or moved): if they come back, they start afresh.
            for book in (self.counters, self.reported, self.pending):
                book.pop(gone, None)
        self.looked = True
        return dict(self.pending)

    def confirm(self, job: str, at: datetime) -> None:
        """The job's activity `at` is in the log: not reported again."""
        self.reported[job] = max(at, self.reported.get(job, at))
        if self.pending.get(job) == at:
            del self.pending[job]
