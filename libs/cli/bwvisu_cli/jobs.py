"""`bwvisu jobs` and `bwvisu job <id>`: an operator's view of every job and of one job's history.

`jobs` reads etcd's read model (what every service folds); `job` reads the job's own events from
the stream, so it also answers for a job the read model has forgotten. Neither prints a secret:
the events carry none, and each is worded field by field (bwvisu_common.job_history).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TypeVar

from bwvisu_common.connect import open_stores
from bwvisu_common.errors import BwvisuError, DependencyUnavailable
from bwvisu_common.job_history import History, age, history, is_job_id, outcome
from bwvisu_common.job_lists import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, STATES, JobFilter, Page, page_of
from bwvisu_common.read_model import JobView
from bwvisu_common.settings import Settings

COLUMNS = ("JOB", "USER", "APP", "STATE", "SLURM", "NODE", "GATEWAY", "AGE")
WIDEST = 24  # a longer cell is cut, so that one odd value cannot push the table off the screen
TIMEOUT = 10.0  # seconds for NATS and etcd to answer
T = TypeVar("T")


class UnknownJob(BwvisuError):
    """No event of that job id is in the stream."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} in the event stream (a job id is what `bwvisu jobs` lists)")
        self.job_id = job_id


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = sub.add_parser("jobs", help="list jobs (newest first), filtered by user, state, gateway")
    jobs.add_argument("--user", default="", help="only this user's jobs")
    jobs.add_argument("--state", default="", choices=("", *STATES), metavar="STATE",
                      help=f"only jobs in this state ({', '.join(STATES)})")
    jobs.add_argument("--gateway", default="", help="only jobs forwarded by this gateway")
    jobs.add_argument("--limit", type=int, default=DEFAULT_PAGE_SIZE,
                      help=f"rows per page (at most {MAX_PAGE_SIZE}; default {DEFAULT_PAGE_SIZE})")
    jobs.add_argument("--page", type=int, default=1, help="which page (default 1)")
    job = sub.add_parser("job", help="one job's events in order, its Slurm id, node, gateway and forwards")
    job.add_argument("job_id", metavar="JOB_ID")


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    wanted = JobFilter(user=args.user, state=args.state, gateway=args.gateway)

    async def read() -> tuple[list[JobView], int]:
        async with AsyncExitStack() as stack:
            _, state = await open_stores(settings, stack, "bwvisu-jobs")
            jobs, seq = await state.load_jobs()
            return list(jobs.values()), seq

    jobs, seq = _within(read())
    page = page_of(jobs, wanted, args.page, args.limit)
    for line in jobs_table(page, datetime.now(UTC)):
        print(line)
    print(footer(page, seq))
    return 0


def cmd_job(settings: Settings, args: argparse.Namespace) -> int:
    job_id = args.job_id
    if not is_job_id(job_id):
        raise UnknownJob(job_id)

    async def read() -> History | None:
        async with AsyncExitStack() as stack:
            events, _ = await open_stores(settings, stack, "bwvisu-jobs")
            return history(await events.read_job(job_id))

    found = _within(read())
    if found is None:
        raise UnknownJob(job_id)
    for line in job_report(found, datetime.now(UTC)):
        print(line)
    return 0


def _within(reading: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(asyncio.wait_for(reading, TIMEOUT))
    except TimeoutError as exc:
        raise DependencyUnavailable(f"NATS or etcd did not answer within {TIMEOUT:.0f} s") from exc


def jobs_table(page: Page, now: datetime) -> list[str]:
    """The page as aligned columns, a header first."""
    rows = [COLUMNS] + [row(j, now) for j in page.jobs]
    cut = [[_cut(cell) for cell in r] for r in rows]
    widths = [max(len(r[i]) for r in cut) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in cut]


def row(job: JobView, now: datetime) -> tuple[str, ...]:
    return (job.job_id, job.uid or "-", job.template_name or "-", job.state.value, job.slurm_id or "-",
            ",".join(job.nodes) or "-", job.gateway or "-", age(job.submitted_at, now))


def footer(page: Page, seq: int) -> str:
    if not page.total:
        return f"no jobs match (read model at stream sequence {seq})"
    first = (page.number - 1) * page.size + 1
    last = first + len(page.jobs) - 1
    more = f"; --page {page.number + 1} for more" if page.has_next else ""
    return (f"jobs {first}-{last} of {page.total} (page {page.number} of {page.pages}{more}); "
            f"read model at stream sequence {seq}")


def job_report(found: History, now: datetime) -> list[str]:
    """The job's facts, then every event with its time and stream sequence."""
    job = found.job
    via = f" (via {job.command_node})" if job.command_node else ""
    services = ", ".join(f"{s.external_port}->{s.internal_port} on {s.gateway} "
                         f"({'answering' if s.open else 'not answering'})" for s in job.services)
    lines = [
        f"job {job.job_id}: {job.uid or '?'} {job.template_name or '?'}",
        f"  state:     {job.state.value}" + (f" ({job.details})" if job.details else ""),
        f"  slurm id:  {job.slurm_id or '-'}{via}",
        f"  node:      {', '.join(job.nodes) or '-'}",
        f"  gateway:   {job.gateway or '-'}",
        f"  forwards:  {services or 'none'}",
        f"  submitted: {_when(job.submitted_at)} ({age(job.submitted_at, now)} ago)",
    ]
    if ended := outcome(job):
        lines.append(f"  finished:  {ended} at {_when(job.updated_at)}")
    lines.append(f"events ({len(found.entries)}):")
    kind_width = max(len(e.kind) for e in found.entries)
    lines += [f"  {_when(e.time, precise=True)}  #{e.seq:<7} {e.kind:<{kind_width}}  {e.text}"
              for e in found.entries]
    return lines


def _when(time: datetime | None, precise: bool = False) -> str:
    if time is None:
        return "-"
    text = time.astimezone(UTC).isoformat(sep=" ", timespec="milliseconds" if precise else "seconds")
    return text.removesuffix("+00:00") + " UTC"


def _cut(cell: str) -> str:
    return cell if len(cell) <= WIDEST else cell[:WIDEST - 1] + "…"


OPERATOR_COMMANDS = {"jobs": cmd_jobs, "job": cmd_job}
