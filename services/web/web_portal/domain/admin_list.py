"""The admin page's sessions table: its filter from the query string, and the links between pages. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from bwvisu_common.job_lists import ORDERS, JobFilter

ADMIN_PAGE_SIZE = 50
MAX_FILTER_LENGTH = 64  # longer than any user or gateway name: nothing would match


@dataclass(frozen=True)
class AdminQuery:
    """What the admin asked for: which sessions, which page of them."""

    wanted: JobFilter
    page: int = 1
    order: str = ""  # "idle": the longest idle sessions first


def parse_query(user: str = "", state: str = "", gateway: str = "", page: str = "",
                sort: str = "") -> AdminQuery:
    """The query string's filter; InvalidInput("state", ...) for a state that does not exist.

    A page that is not a number is the first: a hand-edited URL should still show something."""
    # ASCII digits only ("²" is a digit to str.isdigit, not to int()), and not absurdly many.
    number = int(page) if page.isascii() and page.isdigit() and len(page) <= 9 else 1
    return AdminQuery(JobFilter(user=user.strip()[:MAX_FILTER_LENGTH], state=state.strip(),
                                gateway=gateway.strip()[:MAX_FILTER_LENGTH]), max(1, number),
                      sort if sort in ORDERS else "")


def page_url(wanted: JobFilter, number: int, order: str = "") -> str:
    """The admin page's URL for page `number` of the same filter and order (empty ones left out)."""
    params = {"user": wanted.user, "state": wanted.state, "gateway": wanted.gateway, "sort": order}
    kept = {k: v for k, v in params.items() if v}
    if number > 1:
        kept["page"] = str(number)
    return "/admin" + (f"?{urlencode(kept)}" if kept else "")


def history_url(job_id: str) -> str:
    return f"/admin/jobs/{quote(job_id, safe='')}"
