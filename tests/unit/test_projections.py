from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bwvisu_common import events as ev
from bwvisu_common.job_facts import FailureKind, JobState, Why, WhyKind
from bwvisu_common.read_model import JobView, evolve, fold

SUBMITTED, RUNNING, AVAILABLE, COMPLETING, FINISHED = JobState

FWD = [ev.Forward(internal_port=20001, external_port=21001)]


def submitted(job: str = "j") -> ev.JobSubmitted:
    return ev.JobSubmitted(job_id=job, uid="alice", template_name="xpra", variables={"n": "1"})


def test_a_job_walks_the_whole_state_machine():
    history = [
        submitted(), ev.JobQueued(job_id="j", slurm_id="42"),
        ev.JobStarted(job_id="j", nodes=["cn0"]),
        ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD),
        ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD),
        ev.PortOpen(job_id="j", external_port=21001),
        ev.JobCompleting(job_id="j"),
        ev.JobEnded(job_id="j", slurm_state="COMPLETED", exit_code=0),
    ]
    states = []
    job = None
    for seq, event in enumerate(history, 1):
        job = evolve(job, event, seq)
        states.append(job.state)
    assert states == [SUBMITTED, SUBMITTED, RUNNING, RUNNING, RUNNING, AVAILABLE, COMPLETING, FINISHED]
    assert job.slurm_id == "42" and job.nodes == ["cn0"] and job.exit_code == 0
    assert job.started_at == history[2].time and job.submitted_at == history[0].time
    assert job.services == [] and job.seq == len(history)


def test_available_needs_every_port_and_a_closed_port_goes_back_to_running():
    two = FWD + [ev.Forward(internal_port=20002, external_port=21002)]
    job = fold(list(enumerate([
        submitted(), ev.JobStarted(job_id="j", nodes=["cn0"]),
        ev.PortsForwarded(job_id="j", gateway="gw1", forwards=two),
        ev.PortOpen(job_id="j", external_port=21001),
    ], 1)))
    assert job.state == RUNNING
    job = evolve(job, ev.PortOpen(job_id="j", external_port=21002), 5)
    assert job.state == AVAILABLE and all(s.open and s.gateway == "gw1" for s in job.services)
    job = evolve(job, ev.PortClosed(job_id="j", external_port=21001), 6)
    assert job.state == RUNNING


def test_a_failed_submission_is_finished_with_its_reason():
    job = fold([(1, submitted()),
                (2, ev.JobSubmitFailed(job_id="j", reason="no such user", kind=FailureKind.UNKNOWN_USER))])
    assert job.state == FINISHED and job.failure is FailureKind.UNKNOWN_USER
    assert job.why == Why(WhyKind.SUBMIT_FAILED, "no such user")
    assert job.details == "submission failed: no such user"


def test_a_finished_job_ignores_late_events_but_keeps_slurms_final_word():
    job = fold([(1, submitted()), (2, ev.JobStarted(job_id="j", nodes=["cn0"])),
                (3, ev.JobEnded(job_id="j", slurm_state="CANCELLED", exit_code=None))])
    late = evolve(job, ev.PortOpen(job_id="j", external_port=21001), 4)
    assert late.state == FINISHED and late.details == job.details and late.seq == 4


def test_client_addresses_are_kept_once_each_until_the_job_ends():
    job = fold([(1, submitted()), (2, ev.JobStarted(job_id="j", nodes=["cn0"]))])
    for seq, address in enumerate(["192.0.2.7", "198.51.100.2", "192.0.2.7"], start=3):
        job = evolve(job, ev.ClientAddressAllowed(job_id="j", address=address), seq)
    assert job.client_addresses == ["192.0.2.7", "198.51.100.2"]
    ended = evolve(job, ev.JobEnded(job_id="j", slurm_state="COMPLETED", exit_code=0), 9)
    assert ended.client_addresses == []
    late = evolve(ended, ev.ClientAddressAllowed(job_id="j", address="203.0.113.1"), 10)
    assert late.client_addresses == []


EVENT = st.sampled_from([
    ev.JobQueued(job_id="j", slurm_id="1"),
    ev.JobSubmitFailed(job_id="j", reason="x"),
    ev.JobStarted(job_id="j", nodes=["cn0"]),
    ev.JobDetailsChanged(job_id="j", details="waiting"),
    ev.JobCompleting(job_id="j"),
    ev.JobEnded(job_id="j", slurm_state="COMPLETED", exit_code=0),
    ev.JobCancelRequested(job_id="j"),
    ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD),
    ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD),
    ev.PortsUnavailable(job_id="j", gateway="gw0", forwards=FWD),
    ev.PortOpen(job_id="j", external_port=21001),
    ev.PortClosed(job_id="j", external_port=21001),
    ev.ForwardsRemoved(job_id="j", gateway="gw0"),
    ev.ClientAddressAllowed(job_id="j", address="192.0.2.7"),
])


@settings(max_examples=400)
@given(st.lists(EVENT, max_size=30))
def test_no_sequence_of_events_leaves_finished_or_an_unknown_state(history):
    job = evolve(None, submitted(), 1)
    finished = False
    for seq, event in enumerate(history, 2):
        job = evolve(job, event, seq)
        assert isinstance(job.state, JobState)
        finished = finished or job.state == FINISHED
        if finished:
            assert job.state == FINISHED
    assert job.seq == len(history) + 1


@given(st.lists(EVENT, max_size=20), st.integers(min_value=0, max_value=20))
def test_folding_in_two_parts_equals_folding_at_once(history, cut):
    numbered = list(enumerate([submitted(), *history], 1))
    assert fold(numbered[cut:], fold(numbered[:cut])) == fold(numbered)


def test_only_the_jobs_own_gateway_reports_its_ports() -> None:
    job = fold(list(enumerate([
        submitted(), ev.JobStarted(job_id="j", nodes=["cn0"]),
        ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD),
    ], 1)))
    assert evolve(job, ev.PortOpen(job_id="j", external_port=21001, gateway="gw1"), 4).state == RUNNING
    opened = evolve(job, ev.PortOpen(job_id="j", external_port=21001, gateway="gw0"), 4)
    assert opened.state == AVAILABLE
    assert evolve(opened, ev.PortClosed(job_id="j", external_port=21001, gateway="gw1"), 5).state == AVAILABLE


STARTED = [submitted(), ev.JobQueued(job_id="j", slurm_id="42"), ev.JobStarted(job_id="j", nodes=["cn0"])]


@pytest.mark.parametrize(("event", "why", "details"), [
    (ev.JobQueued(job_id="j", slurm_id="42"), Why(WhyKind.QUEUED, "42"), "queued as Slurm job 42"),
    (ev.JobAdopted(job_id="j", slurm_id="43"), Why(WhyKind.ADOPTED, "43"), "adopted Slurm job 43"),
    (ev.JobStarted(job_id="j", nodes=["cn0"]), Why(WhyKind.RUNNING), "running"),
    (ev.JobCompleting(job_id="j"), Why(WhyKind.COMPLETING), "completing"),
    (ev.JobEnded(job_id="j", slurm_state="TIMEOUT", exit_code=1), Why(WhyKind.ENDED, "TIMEOUT"),
     "ended: TIMEOUT, exit code 1"),
    (ev.JobEnded(job_id="j", slurm_state="ABSENT"), Why(WhyKind.ENDED, "ABSENT"), "ended: ABSENT"),
    (ev.JobCancelRequested(job_id="j"), Why(WhyKind.CANCEL_REQUESTED), "cancel requested"),
    (ev.PortsRequested(job_id="j", count=1, nodes=["cn0"]), Why(WhyKind.PORTS_REQUESTED), "ports requested"),
    (ev.PortsRefused(job_id="j", reason="second request"), Why(WhyKind.PORTS_REFUSED, "second request"),
     "port request refused: second request"),
    (ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD), Why(WhyKind.APP_STARTING),
     "waiting for the application"),
    (ev.JobDetailsChanged.saying("j", Why(WhyKind.SUSPENDED)), Why(WhyKind.SUSPENDED), "suspended"),
])
def test_each_event_says_why_typed_and_in_the_words_the_api_always_used(event, why, details):
    job = fold(list(enumerate([*STARTED, event], 1)))
    assert (job.why, job.details) == (why, details)


def test_an_open_port_says_the_application_listens():
    job = fold(list(enumerate([*STARTED, ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD),
                               ev.PortOpen(job_id="j", external_port=21001)], 1)))
    assert (job.why, job.details) == (Why(WhyKind.APP_LISTENING), "application is listening")


@pytest.mark.parametrize(("details", "why"), [
    ("waiting: Resources", Why(WhyKind.QUEUED_WAITING, "Resources")),
    ("waiting", Why(WhyKind.QUEUED_WAITING)),
    ("Slurm cannot be asked right now: no command node answered",
     Why(WhyKind.SCHEDULER_UNREACHABLE, "no command node answered")),
    ("suspended", Why(WhyKind.SUSPENDED)),
    ("Slurm reports an unknown state: WEIRD", Why(WhyKind.SLURM_STATE_UNKNOWN, "WEIRD")),
    ("cancel failed: scancel: error", Why(WhyKind.CANCEL_FAILED, "scancel: error")),
    ("something an older version said", Why(WhyKind.NONE, "something an older version said")),
])
def test_a_note_from_an_earlier_version_is_read_as_its_typed_reason(details, why):
    old = msgspec.json.encode({"type": "JobDetailsChanged", "job_id": "j", "event_id": "e1",
                               "time": "2026-01-01T00:00:00Z", "details": details})
    job = fold(list(enumerate([*STARTED, ev.decode(old)], 1)))
    assert (job.why, job.details) == (why, details)


def test_a_snapshot_from_an_earlier_version_decodes_with_typed_facts():
    old = {"job_id": "j", "uid": "alice", "state": "finished", "failure": "",
           "details": "ended: COMPLETED, exit code 0", "exit_code": 0, "seq": 7}
    job = msgspec.json.decode(msgspec.json.encode(old), type=JobView)
    assert job.state is JobState.FINISHED and job.failure is FailureKind.NONE
    assert job.why == Why(WhyKind.ENDED, "COMPLETED") and job.details == old["details"]
    failed = msgspec.json.decode(msgspec.json.encode(
        {**old, "failure": "unavailable", "details": "submission failed: ssh: refused"}), type=JobView)
    assert failed.failure is FailureKind.UNAVAILABLE
    assert failed.why == Why(WhyKind.SUBMIT_FAILED, "ssh: refused")


def test_the_typed_facts_keep_their_json_values():
    failed = ev.JobSubmitFailed(job_id="j", reason="x", kind=FailureKind.UNAVAILABLE)
    raw = msgspec.json.decode(msgspec.json.encode(fold([(1, submitted()), (2, failed)])))
    assert (raw["state"], raw["failure"], raw["details"]) == ("finished", "unavailable",
                                                              "submission failed: x")
    assert raw["why"] == {"kind": "submit-failed", "text": "x"}


FWD0 = [ev.Forward(internal_port=20001, external_port=21501)]


def moved_to_gw0() -> list[ev.Event]:
    """A job available on gw1, whose forwards moved to gw0 once gw1 was declared dead."""
    return [
        *STARTED,
        ev.PortsAssigned(job_id="j", gateway="gw1", nodes=["cn0"], forwards=FWD),
        ev.PortsForwarded(job_id="j", gateway="gw1", forwards=FWD),
        ev.PortOpen(job_id="j", external_port=21001, gateway="gw1"),
        ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD0, moved_from="gw1"),
        ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD0),
        ev.PortOpen(job_id="j", external_port=21501, gateway="gw0"),
    ]


def test_a_moved_job_is_available_on_its_new_gateway() -> None:
    job = fold(list(enumerate(moved_to_gw0(), 1)))
    assert job is not None and job.state == AVAILABLE and job.gateway == "gw0"
    assert [(s.gateway, s.external_port, s.open) for s in job.services] == [("gw0", 21501, True)]


def test_the_old_gateways_late_events_never_touch_the_moved_jobs_forwards() -> None:
    """The observed failure: a late ForwardsRemoved (or PortsUnavailable, PortsForwarded) from the
    gateway the job left once left it `available` with no services while its application ran."""
    moved = fold(list(enumerate(moved_to_gw0(), 1)))
    late = [ev.ForwardsRemoved(job_id="j", gateway="gw1"),
            ev.PortsUnavailable(job_id="j", gateway="gw1", forwards=FWD, reason="late"),
            ev.PortsForwarded(job_id="j", gateway="gw1", forwards=FWD),
            ev.PortClosed(job_id="j", external_port=21001, gateway="gw1")]
    job = fold(list(enumerate(late, 20)), moved)
    assert job is not None and job.state == AVAILABLE and job.gateway == "gw0"
    assert job.services == moved.services and job.ports_granted


def test_the_current_gateway_still_removes_its_own_forwards() -> None:
    moved = fold(list(enumerate(moved_to_gw0(), 1)))
    job = evolve(moved, ev.ForwardsRemoved(job_id="j", gateway="gw0"), 20)
    assert job.services == []


def test_forwards_on_a_new_gateway_are_running_until_probed_there() -> None:
    history = moved_to_gw0()[:-1]
    job = fold(list(enumerate(history, 1)))
    assert job is not None and job.state == RUNNING
    assert [s.gateway for s in job.services] == ["gw0"] and not job.services[0].open
