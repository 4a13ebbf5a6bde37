"""The operator's view: which jobs are listed (filters, pages), and one job's history in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bwvisu_cli.jobs import footer, job_report, jobs_table
from bwvisu_common import events as ev
from bwvisu_common.errors import InvalidInput
from bwvisu_common.job_facts import JobState
from bwvisu_common.job_history import age, describe, history, is_job_id, outcome
from bwvisu_common.job_lists import MAX_PAGE_SIZE, JobFilter, page_of
from bwvisu_common.read_model import JobView

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
FWD = [ev.Forward(internal_port=20001, external_port=21001)]


def job(n: int, uid: str = "alice", state: JobState = JobState.RUNNING, gateway: str = "gw0") -> JobView:
    return JobView(job_id=f"job{n:04d}", uid=uid, template_name="xpra-desktop", state=state, gateway=gateway,
                   slurm_id=str(100 + n), nodes=["cn0"], submitted_at=T0 + timedelta(minutes=n))


def lifecycle(job_id: str = "j1") -> list[tuple[int, ev.AnyEvent]]:
    at = [T0 + timedelta(seconds=s) for s in range(8)]
    events: list[ev.AnyEvent] = [
        ev.JobSubmitted(job_id=job_id, uid="alice", template_name="xpra-desktop",
                        variables={"runtime": "30"}, time=at[0]),
        ev.JobQueued(job_id=job_id, slurm_id="4711", command_node="login0", time=at[1]),
        ev.JobStarted(job_id=job_id, nodes=["cn0"], time=at[2]),
        ev.PortsAssigned(job_id=job_id, gateway="gw0", nodes=["cn0"], forwards=FWD, time=at[3]),
        ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=FWD, time=at[4]),
        ev.PortOpen(job_id=job_id, external_port=21001, gateway="gw0", time=at[5]),
        ev.JobCancelRequested(job_id=job_id, time=at[6]),
        ev.JobEnded(job_id=job_id, slurm_state="CANCELLED", exit_code=0, time=at[7]),
    ]
    return [(10 + 3 * i, e) for i, e in enumerate(events)]


# --- which jobs -------------------------------------------------------------------------------


def test_filters_by_user_state_and_gateway_together():
    jobs = [job(1, "alice"), job(2, "bob"), job(3, "alice", JobState.FINISHED),
            job(4, "alice", gateway="gw1"), job(5, "alice", gateway="")]
    ids = lambda f: [j.job_id for j in page_of(jobs, f).jobs]  # noqa: E731
    assert ids(JobFilter()) == ["job0005", "job0004", "job0003", "job0002", "job0001"], "newest first"
    assert ids(JobFilter(user="alice")) == ["job0005", "job0004", "job0003", "job0001"]
    assert ids(JobFilter(user="alice", state="running")) == ["job0005", "job0004", "job0001"]
    assert ids(JobFilter(user="alice", state="running", gateway="gw0")) == ["job0001"]
    assert ids(JobFilter(user="nobody")) == []


def test_an_unknown_state_is_refused_naming_the_states():
    with pytest.raises(InvalidInput, match="state: expected one of submitted, running") as err:
        JobFilter(state="runing")
    assert err.value.field == "state"


def test_pages_are_bounded_and_cover_every_job_once():
    jobs = [job(n) for n in range(123)]
    pages = [page_of(jobs, JobFilter(), n, 50) for n in (1, 2, 3)]
    assert [len(p.jobs) for p in pages] == [50, 50, 23]
    assert {p.pages for p in pages} == {3} and {p.total for p in pages} == {123}
    seen = [j.job_id for p in pages for j in p.jobs]
    assert len(set(seen)) == 123
    assert pages[0].has_next and not pages[0].has_previous and not pages[2].has_next
    assert page_of(jobs, JobFilter(), 99, 50).number == 3, "past the end: the last page"
    assert page_of(jobs, JobFilter(), 0, 50).number == 1
    assert page_of(jobs, JobFilter(), 1, 10**6).size == MAX_PAGE_SIZE
    empty = page_of([], JobFilter(), 1, 50)
    assert empty.pages == 1 and empty.total == 0 and not empty.has_next


# --- one job's history ------------------------------------------------------------------------


def test_the_history_is_in_stream_order_and_folds_to_the_job():
    found = history(list(reversed(lifecycle())))
    assert found is not None
    assert [e.seq for e in found.entries] == sorted(e.seq for e in found.entries)
    assert [e.kind for e in found.entries][:3] == ["JobSubmitted", "JobQueued", "JobStarted"]
    assert found.job.slurm_id == "4711" and found.job.gateway == "gw0" and found.job.nodes == ["cn0"]
    assert found.job.state == JobState.FINISHED
    assert outcome(found.job) == "ended: CANCELLED, exit code 0 after a cancel request"
    assert history([]) is None


def test_each_event_is_worded_with_its_facts():
    words = [describe(e) for _, e in lifecycle()]
    assert words == [
        "alice submitted xpra-desktop (runtime=30)", "queued as Slurm job 4711 via login0", "started on cn0",
        "gw0 assigned 21001->20001", "gw0 forwards 21001->20001", "port 21001 answers (probed by gw0)",
        "cancel requested", "ended: CANCELLED, exit code 0",
    ]
    assert describe(ev.JobSubmitFailed(job_id="j", reason="sbatch: invalid partition")) == (
        "submission failed (rejected): sbatch: invalid partition")
    assert describe(ev.PortsUnavailable(job_id="j", gateway="gw1", forwards=FWD, reason="in use")) == (
        "gw1 could not forward 21001->20001: in use")


def test_only_plain_job_ids_are_looked_up():
    assert is_job_id("0123456789abcdef") and is_job_id("job1-3_x")
    for bad in ("", "a.b", "*", ">", "a b", "x" * 65):
        assert not is_job_id(bad), bad


def test_ages_are_short():
    assert [age(T0 - timedelta(seconds=s), T0) for s in (5, 125, 7300, 200000)] == ["5s", "2m", "2h", "2d"]
    assert age(None, T0) == "-"


# --- the CLI's text ---------------------------------------------------------------------------


def test_the_jobs_table_is_aligned_with_a_header_and_every_column():
    page = page_of([job(1), job(2, "bob", JobState.SUBMITTED, gateway="")], JobFilter())
    header, first, second = jobs_table(page, T0 + timedelta(minutes=12))
    assert header.split() == ["JOB", "USER", "APP", "STATE", "SLURM", "NODE", "GATEWAY", "AGE"]
    assert first.split() == ["job0002", "bob", "xpra-desktop", "submitted", "102", "cn0", "-", "10m"]
    assert second.split() == ["job0001", "alice", "xpra-desktop", "running", "101", "cn0", "gw0", "11m"]
    assert header.index("STATE") == first.index("submitted") == second.index("running")


def test_a_long_cell_is_cut_so_the_table_stays_readable():
    long = JobView(job_id="j", uid="u" * 80, submitted_at=T0)
    (_, line) = jobs_table(page_of([long], JobFilter()), T0)
    assert "u" * 80 not in line and "…" in line


def test_the_footer_says_where_the_page_is_and_how_to_get_more():
    jobs = [job(n) for n in range(7)]
    assert footer(page_of(jobs, JobFilter(), 1, 3), 99) == (
        "jobs 1-3 of 7 (page 1 of 3; --page 2 for more); read model at stream sequence 99")
    assert footer(page_of(jobs, JobFilter(), 3, 3), 99).startswith("jobs 7-7 of 7 (page 3 of 3)")
    assert footer(page_of([], JobFilter()), 5) == "no jobs match (read model at stream sequence 5)"


def test_the_job_report_has_the_facts_then_every_event_with_its_time():
    found = history(lifecycle()[:6])
    assert found is not None
    lines = job_report(found, T0 + timedelta(hours=1))
    text = "\n".join(lines)
    assert lines[0] == "job j1: alice xpra-desktop"
    assert "  slurm id:  4711 (via login0)" in lines and "  node:      cn0" in lines
    assert "  gateway:   gw0" in lines
    assert "  forwards:  21001->20001 on gw0 (answering)" in lines
    assert "finished:" not in text, "still running"
    assert lines[7] == "events (6):"
    assert lines[8].startswith("  2026-11-29 09:00:00.000 UTC  #10 ") and lines[8].endswith(
        "alice submitted xpra-desktop (runtime=30)")
    assert lines[-1].startswith("  2026-11-29 09:00:05.000 UTC  #25 ")
    ended = job_report(history(lifecycle()), T0)  # type: ignore[arg-type]
    assert ("  finished:  ended: CANCELLED, exit code 0 after a cancel request at 2026-11-29 09:00:07 UTC"
            in ended)
    assert "  forwards:  none" in ended
