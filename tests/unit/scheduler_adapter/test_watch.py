from __future__ import annotations

from bwvisu_common import events as ev
from bwvisu_common.projections import JobView, evolve
from scheduler_adapter.domain.slurm import SqueueEntry
from scheduler_adapter.domain.watch import ABSENT, UNREACHABLE, Diff, diff, diff_error

TAG = "bwvisu"


def queued(job_id: str = "j1", slurm_id: str = "100") -> JobView:
    view = evolve(None, ev.JobSubmitted(job_id=job_id, uid="alice", template_name="t"), 1)
    return evolve(view, ev.JobQueued(job_id=job_id, slurm_id=slurm_id), 2)


def entry(state: str, slurm_id: str = "100", job_id: str = "j1", reason: str = "None",
          nodes: str = "", exit_code: int | None = 0, user: str = "alice") -> SqueueEntry:
    return SqueueEntry(slurm_id=slurm_id, state=state, reason=reason, nodelist=nodes, user=user,
                       exit_code=exit_code, name=f"{TAG}-{job_id}")


def run(views: list[JobView], entries: list[SqueueEntry], absent: dict[str, int] | None = None,
        in_flight: tuple[str, ...] = ()) -> Diff:
    return diff(views, entries, tag=TAG, absent=absent or {}, absent_polls_to_finish=3, in_flight=in_flight)


def apply(view: JobView, d: Diff) -> JobView:
    for a in d.appends:
        assert a.job_id == view.job_id and a.expected_seq == view.seq
        for e in a.events:
            view = evolve(view, e, view.seq + 1)
    return view


def kinds(d: Diff) -> list[str]:
    return [type(e).__name__ for a in d.appends for e in a.events]


def test_pending_running_completing_then_ended() -> None:
    view = queued()
    d = run([view], [entry("PENDING", reason="Resources")])
    assert kinds(d) == ["JobDetailsChanged"]
    view = apply(view, d)
    assert view.details == "waiting: Resources"
    assert run([view], [entry("PENDING", reason="Resources")]).appends == []  # told once

    d = run([view], [entry("RUNNING", nodes="cn[0-1]")])
    assert kinds(d) == ["JobStarted"]
    view = apply(view, d)
    assert (view.state, view.nodes) == ("running", ["cn0", "cn1"])
    assert run([view], [entry("RUNNING", nodes="cn[0-1]")]).appends == []

    view = apply(view, d := run([view], [entry("COMPLETING", nodes="cn[0-1]")]))
    assert kinds(d) == ["JobCompleting"] and view.state == "completing"

    view = apply(view, d := run([view], [entry("COMPLETED", exit_code=0)]))
    assert kinds(d) == ["JobEnded"]
    assert (view.state, view.exit_code) == ("finished", 0)
    assert run([view], [entry("COMPLETED")]).appends == []


def test_a_job_seen_first_when_completing_starts_and_completes() -> None:
    assert kinds(run([queued()], [entry("COMPLETING", nodes="cn0")])) == ["JobStarted", "JobCompleting"]


def test_a_failed_job_reports_slurms_state_and_exit_code() -> None:
    d = run([queued()], [entry("FAILED", exit_code=3)])
    ended = d.appends[0].events[0]
    assert isinstance(ended, ev.JobEnded) and (ended.slurm_state, ended.exit_code) == ("FAILED", 3)


def test_absent_is_finished_only_after_n_successful_polls() -> None:
    view = apply(queued(), run([queued()], [entry("RUNNING", nodes="cn0")]))
    absent: dict[str, int] = {}
    for _ in range(2):
        d = run([view], [], absent)
        assert d.appends == []
        absent = d.absent
    d = run([view], [], absent)
    assert kinds(d) == ["JobEnded"]
    assert d.appends[0].events[0].slurm_state == ABSENT  # type: ignore[attr-defined]


def test_seeing_a_job_again_resets_its_absence() -> None:
    view = apply(queued(), run([queued()], [entry("RUNNING", nodes="cn0")]))
    d = run([view], [], {"j1": 2})
    assert kinds(d) == ["JobEnded"]
    d = run([view], [entry("RUNNING", nodes="cn0")], {"j1": 2})
    assert d.absent == {} and d.appends == []
    assert run([view], [], d.absent).appends == []


def test_squeue_error_changes_no_state_and_is_told_once() -> None:
    view = apply(queued(), run([queued()], [entry("RUNNING", nodes="cn0")]))
    appends = diff_error([view], "no command node answered")
    assert [type(e).__name__ for a in appends for e in a.events] == ["JobDetailsChanged"]
    view = apply(view, Diff(appends=appends))
    assert view.state == "running" and view.details.startswith(UNREACHABLE)
    assert diff_error([view], "no command node answered") == []
    assert diff_error([view], "another message") == []
    # Polls work again: the note goes, the state stays.
    view = apply(view, d := run([view], [entry("RUNNING", nodes="cn0")]))
    assert kinds(d) == ["JobDetailsChanged"] and (view.state, view.details) == ("running", "running")


def test_jobs_not_yet_queued_are_not_counted_absent() -> None:
    submitted = evolve(None, ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"), 1)
    d = run([submitted], [], {})
    assert d.appends == [] and d.absent == {}


def test_tagged_jobs_unknown_to_the_projection_are_adopted() -> None:
    d = run([], [entry("RUNNING", slurm_id="7", job_id="lost1", nodes="cn0", user="bob")])
    assert len(d.appends) == 1
    adopted = d.appends[0]
    assert adopted.expected_seq == 0
    assert adopted.events == [ev.JobAdopted(job_id="lost1", slurm_id="7", uid="bob",
                                            event_id=adopted.events[0].event_id,
                                            time=adopted.events[0].time)]
    # Old finished jobs of a log we never had are history, not adopted.
    assert run([], [entry("COMPLETED", slurm_id="8", job_id="old")]).appends == []


def test_a_submitted_job_found_in_slurm_is_adopted_unless_being_submitted() -> None:
    submitted = evolve(None, ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"), 5)
    d = run([submitted], [entry("COMPLETED", slurm_id="9")])
    assert kinds(d) == ["JobAdopted"] and d.appends[0].expected_seq == 5
    assert run([submitted], [entry("RUNNING", slurm_id="9")], in_flight=("j1",)).appends == []


def test_a_running_job_of_a_failed_submit_is_a_stray() -> None:
    failed = evolve(evolve(None, ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"), 1),
                    ev.JobSubmitFailed(job_id="j1", reason="lost", kind="unavailable"), 2)
    d = run([failed], [entry("RUNNING", slurm_id="9")])
    assert d.appends == [] and [s.slurm_id for s in d.strays] == ["9"]


def test_foreign_and_untagged_jobs_are_ignored() -> None:
    other = SqueueEntry(slurm_id="5", state="RUNNING", reason="None", nodelist="cn0", user="bob",
                        exit_code=0, name="bwvisu-")
    assert run([], [other]).appends == []


def test_unknown_slurm_state_is_no_change() -> None:
    view = queued()
    d = run([view], [entry("WEIRD_NEW_STATE")])
    view = apply(view, d)
    assert view.state == "submitted" and "WEIRD_NEW_STATE" in view.details
