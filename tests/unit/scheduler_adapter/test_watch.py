from __future__ import annotations

from bwvisu_common import events as ev
from bwvisu_common.job_facts import Why, WhyKind
from bwvisu_common.read_model import JobView, evolve
from scheduler_adapter.domain.slurm import SqueueEntry
from scheduler_adapter.domain.watch import (
    ABSENT,
    MAX_RECHECK,
    Diff,
    adopt,
    diff,
    diff_error,
    settle,
)

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
    assert view.state == "running"
    assert view.why == Why(WhyKind.SCHEDULER_UNREACHABLE, "no command node answered")
    assert view.details == "Slurm cannot be asked right now: no command node answered"
    assert diff_error([view], "no command node answered") == []
    assert diff_error([view], "another message") == []
    # Polls work again: the note goes, the state stays.
    view = apply(view, d := run([view], [entry("RUNNING", nodes="cn0")]))
    assert kinds(d) == ["JobDetailsChanged"] and (view.state, view.details) == ("running", "running")


def test_jobs_not_yet_queued_are_not_counted_absent() -> None:
    submitted = evolve(None, ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"), 1)
    d = run([submitted], [], {})
    assert d.appends == [] and d.absent == {}


def test_tagged_jobs_nobody_submitted_are_never_adopted() -> None:
    # Anyone can name a Slurm job `bwvisu-<anything>`: without a JobSubmitted it is not ours.
    assert run([], [entry("RUNNING", slurm_id="7", job_id="lost1", nodes="cn0", user="bob")]) == Diff()


def submitted(job_id: str = "j1", uid: str = "alice", seq: int = 5) -> JobView:
    return evolve(None, ev.JobSubmitted(job_id=job_id, uid=uid, template_name="t"), seq)


def test_a_submitted_job_found_in_slurm_is_a_claim_to_confirm_unless_being_submitted() -> None:
    d = run([submitted()], [entry("COMPLETED", slurm_id="9")])
    assert d.appends == []
    [claim] = d.adoptions
    assert (claim.job_id, claim.expected_seq, claim.uid, claim.entry.slurm_id) == ("j1", 5, "alice", "9")
    append = adopt(claim)
    assert [type(e).__name__ for e in append.events] == ["JobAdopted"] and append.expected_seq == 5
    assert run([submitted()], [entry("RUNNING", slurm_id="9")], in_flight=("j1",)).adoptions == []


def test_only_the_submitting_users_slurm_job_can_be_adopted() -> None:
    # bob names his Slurm job after alice's bwvisu job: it is not hers.
    assert run([submitted()], [entry("RUNNING", slurm_id="9", user="bob")]) == Diff()


def test_a_running_job_of_a_failed_submit_is_a_stray() -> None:
    failed = evolve(evolve(None, ev.JobSubmitted(job_id="j1", uid="alice", template_name="t"), 1),
                    ev.JobSubmitFailed(job_id="j1", reason="lost", kind="unavailable"), 2)
    d = run([failed], [entry("RUNNING", slurm_id="9")])
    assert d.appends == [] and [(s.entry.slurm_id, s.uid) for s in d.strays] == [("9", "alice")]
    # Another user's job named like it is no stray of ours: we would cancel a stranger's job.
    assert run([failed], [entry("RUNNING", slurm_id="9", user="bob")]).strays == []
    # One already cancelled is not cancelled again.
    again = diff([failed], [entry("RUNNING", slurm_id="9")], tag=TAG, absent={}, absent_polls_to_finish=3,
                 cancelled={"9"})
    assert again.strays == []


def test_a_second_slurm_job_of_a_queued_job_is_a_stray() -> None:
    # An sbatch without an answer reached Slurm after the job was queued through another node.
    view = queued()  # alice's job j1 is Slurm job 100
    d = run([view], [entry("RUNNING", slurm_id="100", nodes="cn0"), entry("PENDING", slurm_id="101")])
    assert kinds(d) == ["JobStarted"] and [s.entry.slurm_id for s in d.strays] == ["101"]
    # Not while the job is being submitted, not once it ended by itself, not another user's.
    assert run([view], [entry("PENDING", slurm_id="101")], in_flight=("j1",)).strays == []
    assert run([view], [entry("COMPLETED", slurm_id="101")]).strays == []
    assert run([view], [entry("PENDING", slurm_id="101", user="bob")]).strays == []


def test_a_slurm_job_named_like_ours_with_another_id_or_user_is_not_ours() -> None:
    view = queued()  # alice's job j1 is Slurm job 100
    # bob's Slurm job 555, named like j1, says "completed": j1 is not touched.
    d = run([view], [entry("RUNNING", slurm_id="100", nodes="cn0"),
                     entry("COMPLETED", slurm_id="555", user="bob")])
    assert kinds(d) == ["JobStarted"]
    # A line with j1's Slurm id but bob as user or another name is not j1's: j1 counts as missing.
    for impostor in (entry("COMPLETED", user="bob"), entry("COMPLETED", job_id="other")):
        d = run([view], [impostor])
        assert d.appends == [] and d.absent == {"j1": 1}


def test_a_repeated_slurm_id_decides_nothing_and_is_rechecked_without_names() -> None:
    view = queued()
    d = diff([view], [], tag=TAG, absent={"j1": 1}, absent_polls_to_finish=2, ambiguous={"100"})
    assert d.appends == [] and d.unsure == [view] and d.absent == {"j1": 1}
    # The name-free answer decides, if Slurm id and user match.
    nameless = SqueueEntry(slurm_id="100", state="RUNNING", reason="None", nodelist="cn0", user="alice",
                           exit_code=0, name="")
    assert [type(e).__name__ for a in settle([view], [nameless]) for e in a.events] == ["JobStarted"]
    assert settle([view], [SqueueEntry(slurm_id="100", state="COMPLETED", reason="None", nodelist="",
                                       user="bob", exit_code=0, name="")]) == []


def test_foreign_and_untagged_jobs_are_ignored() -> None:
    other = SqueueEntry(slurm_id="5", state="RUNNING", reason="None", nodelist="cn0", user="bob",
                        exit_code=0, name="bwvisu-")
    assert run([], [other]).appends == []


def test_unknown_slurm_state_is_no_change() -> None:
    view = queued()
    d = run([view], [entry("WEIRD_NEW_STATE")])
    view = apply(view, d)
    assert view.state == "submitted" and "WEIRD_NEW_STATE" in view.details


def test_rechecks_are_bounded_per_poll() -> None:
    views = [queued(job_id=f"j{i}", slurm_id=str(100 + i)) for i in range(MAX_RECHECK + 5)]
    d = diff(views, [], tag=TAG, absent={}, absent_polls_to_finish=3,
             ambiguous={v.slurm_id for v in views})
    assert d.unsure == views[:MAX_RECHECK]
