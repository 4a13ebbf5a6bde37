"""Which jobs an operator lists: filtered by user, state and gateway, newest first, a page at a time. Pure.

`bwvisu jobs` and the portal's admin page select the same way, so that ten thousand jobs are never one
table: a page is at most `MAX_PAGE_SIZE` rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from bwvisu_common.errors import InvalidInput
from bwvisu_common.idle import idle_since
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Jobs without a submission time (adopted ones) sort as the oldest.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATES = tuple(s.value for s in JobState)
ORDERS = ("", "idle")  # newest submission first; longest idle first


@dataclass(frozen=True)
class JobFilter:
    """What an operator asks for; an empty field matches every job."""

    user: str = ""
    state: str = ""  # a JobState value
    gateway: str = ""

    def __post_init__(self) -> None:
        if self.state and self.state not in STATES:
            raise InvalidInput("state", f"expected one of {', '.join(STATES)}, got {self.state!r}")

    def matches(self, job: JobView) -> bool:
        return ((not self.user or job.uid == self.user)
                and (not self.state or job.state.value == self.state)
                and (not self.gateway or job.gateway == self.gateway))


@dataclass(frozen=True)
class Page:
    """One page of the jobs that match: `number` counts from 1, `pages` is at least 1."""

    jobs: list[JobView]
    number: int
    pages: int
    total: int  # jobs that match, on every page
    size: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def page_of(jobs: Iterable[JobView], wanted: JobFilter, number: int = 1,
            size: int = DEFAULT_PAGE_SIZE, order: str = "") -> Page:
    """Page `number` of the jobs `wanted` matches, newest submission first, or with `order` "idle"
    the longest idle first (then the jobs idleness does not apply to, newest first); a number past
    the last page gives the last page."""
    size = min(max(1, size), MAX_PAGE_SIZE)
    matching = [j for j in jobs if wanted.matches(j)]
    matching.sort(key=lambda j: (j.submitted_at or _EPOCH, j.job_id), reverse=True)
    if order == "idle":
        # Stable: among equally idle jobs (and those never idle, last) the newest stay first.
        matching.sort(key=lambda j: (idle_since(j) is None, idle_since(j) or _EPOCH))
    pages = max(1, -(-len(matching) // size))
    number = min(max(1, number), pages)
    start = (number - 1) * size
    return Page(jobs=matching[start:start + size], number=number, pages=pages, total=len(matching), size=size)
