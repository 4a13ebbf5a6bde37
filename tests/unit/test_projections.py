from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bwvisu_common import events as ev
from bwvisu_common.projections import (
    AVAILABLE,
    COMPLETING,
    FINISHED,
    RUNNING,
    STATES,
    SUBMITTED,
    evolve,
    fold,
)

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
                (2, ev.JobSubmitFailed(job_id="j", reason="no such user", kind="unknown-user"))])
    assert job.state == FINISHED and "no such user" in job.details and job.failure == "unknown-user"


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
        assert job.state in STATES
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
