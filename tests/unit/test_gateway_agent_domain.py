"""The gateway agent's decisions, pure: what to do with an assignment, what reconciling changes,
what a probe's answer means."""

from __future__ import annotations

from bwvisu_common import events as ev
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView, Service
from gateway_agent.domain.checks import Limits
from gateway_agent.domain.forwarding import (
    ForwardTable,
    Install,
    Refuse,
    busy_ports,
    concrete_rules,
    decide_forward,
    port_checks,
    split_sources,
)
from gateway_agent.domain.probing import ProbeBook, Timing
from gateway_agent.domain.reconciling import (
    LeaveOut,
    Restore,
    jobs_to_check,
    owners_to_release,
    plan_reconcile,
    restore_decision,
)
from gateway_agent.domain.rules import ForwardRule

FWD = [ev.Forward(internal_port=20500, external_port=20000)]
GW = "10.0.0.30"


def rule(job_id: str = "j", port: int = 20000, source: str = "") -> ForwardRule:
    return ForwardRule(job_id=job_id, external_port=port, target_ip="10.0.0.20", internal_port=20500,
                       gateway_ip=GW, source=source)


def started(job_id: str = "j") -> list[ev.Event]:
    return [ev.JobSubmitted(job_id=job_id, uid="alice", template_name="t"),
            ev.JobStarted(job_id=job_id, nodes=["cn0"])]


def test_a_current_fitting_assignment_is_installed_for_the_clients_the_log_names() -> None:
    assigned = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD)
    allowed = ev.ClientAddressAllowed(job_id="j", address="192.0.2.1")
    assert decide_forward([*started(), allowed, assigned], assigned, Limits()) == Install(["192.0.2.1"])


def test_an_answered_or_unknown_assignment_is_left_alone_and_a_misfit_refused() -> None:
    assigned = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD)
    answered = ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD)
    assert decide_forward([*started(), assigned, answered], assigned, Limits()) is None  # a replay
    assert decide_forward(started(), assigned, Limits()) is None  # not in the log
    stranger = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn9"], forwards=FWD)
    decision = decide_forward([*started(), stranger], stranger, Limits())
    assert isinstance(decision, Refuse) and decision.reason.startswith("refused: nodes not the job's")


def test_busy_ports_are_those_that_answer_and_those_another_job_forwards() -> None:
    checks = port_checks(["10.0.0.20", "10.0.0.21"], FWD, GW)
    assert checks == [("10.0.0.20", 20500), ("10.0.0.21", 20500), (GW, 20000)]
    assert busy_ports(checks, [False, False, False], FWD, [20001], GW) == []
    assert busy_ports(checks, [False, True, False], FWD, [], GW) == ["10.0.0.21:20500"]
    assert busy_ports(checks, [False] * 3, FWD, [20000], GW) == [f"{GW}:20000 (forwarded for another job)"]


def test_sources_split_and_restricted_rules_are_one_per_client() -> None:
    assert split_sources(["192.0.2.1", "::1", "x", "192.0.2.2"]) == (["192.0.2.1", "192.0.2.2"], ["::1", "x"])
    assert concrete_rules([rule()], ["192.0.2.1"], restrict=False) == [rule()]
    assert concrete_rules([rule()], ["192.0.2.1", "192.0.2.2"], restrict=True) == [
        rule(source="192.0.2.1"), rule(source="192.0.2.2")]
    assert concrete_rules([rule()], [], restrict=True) == []


def test_the_table_knows_new_clients_only_of_forwarded_jobs() -> None:
    table = ForwardTable()
    assert not table.is_new_client("j", "192.0.2.1")  # not forwarded here
    table.put("j", [rule(), rule(port=20001)], ["192.0.2.1"])
    assert not table.is_new_client("j", "192.0.2.1") and table.is_new_client("j", "192.0.2.2")
    assert table.count == 2 and table.keys() == {("j", 20000), ("j", 20001)}
    table.drop("j")
    assert table.count == 0 and not table.holds("j")


def test_reconcile_restores_what_the_log_forwards_here_and_checks_it_again() -> None:
    assigned = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD)
    history = [*started(), assigned, ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD)]
    decision = restore_decision(history, "gw0", Limits())
    assert isinstance(decision, Restore) and decision.wanted.forwards == FWD
    assert restore_decision(history, "gw1", Limits()) is None
    assert isinstance(restore_decision(history, "gw0", Limits(port_max=20100)), LeaveOut)


def test_the_plan_removes_stale_jobs_replaces_mismatched_ones_and_adds_the_rest() -> None:
    installed = [rule("stale"), rule("drifted", port=20001), rule("kept", port=20002)]
    desired = {"drifted": [rule("drifted", port=20003)], "kept": [rule("kept", port=20002)],
               "lost": [rule("lost", port=20004)]}
    plan = plan_reconcile(installed, desired)
    assert plan.stale == ["stale"] and plan.mismatched == ["drifted"]
    assert plan.install == sorted(r for rules in desired.values() for r in rules)


def test_jobs_to_check_and_owners_to_release() -> None:
    views = [JobView(job_id="live", gateway="gw0", state=JobState.RUNNING),
             JobView(job_id="done", gateway="gw0", state=JobState.FINISHED),
             JobView(job_id="other", gateway="gw1", state=JobState.RUNNING)]
    assert jobs_to_check([rule("stray")], views, "gw0") == ["live", "stray"]
    held = {"ports/gw0/1": "live", "ports/gw0/2": "done", "ports/gw0/3": "ghost"}
    by_id = {v.job_id: v for v in views}
    assert owners_to_release(held, {owner: by_id.get(owner) for owner in held.values()}) == ["done", "ghost"]


def test_a_probe_reports_only_changes_and_is_due_by_the_ports_state() -> None:
    book = ProbeBook(Timing(fast_probe=1.0, slow_probe=10.0))
    view = JobView(job_id="j", state=JobState.AVAILABLE,
                   services=[Service(internal_port=20500, external_port=20000, gateway="gw0", open=True)])
    forwards = {"j": [rule()], "queued": [rule("queued", port=20001)]}
    views = {"j": view, "queued": JobView(job_id="queued", state=JobState.SUBMITTED)}
    assert [key for key, _ in book.due(forwards, views, now=100.0)] == [("j", 20000)]
    assert book.answer(("j", 20000), True, "gw0") is None  # the log says open already
    assert book.due(forwards, views, now=105.0) == []  # open: probed seldom
    closed = book.answer(("j", 20000), False, "gw0")
    assert isinstance(closed, ev.PortClosed)
    assert (closed.job_id, closed.external_port, closed.gateway) == ("j", 20000, "gw0")
    assert [key for key, _ in book.due(forwards, views, now=111.0)] == [("j", 20000)]
    assert book.due(forwards, views, now=111.5) == []  # closed: again after fast_probe
    book.keep_only(set())
    assert book.is_open == {} and book.last_probe == {}



FWD0 = [ev.Forward(internal_port=20500, external_port=20007)]


def moved_history() -> tuple[list[ev.Event], ev.PortsAssigned]:
    """Forwarded on gw1, then moved to gw0 (gw1 was declared dead), and forwarded there."""
    move = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD0, moved_from="gw1")
    return [*started(), ev.PortsAssigned(job_id="j", gateway="gw1", nodes=["cn0"], forwards=FWD),
            ev.PortsForwarded(job_id="j", gateway="gw1", forwards=FWD), move,
            ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD0)], move


def test_the_failure_sequence_a_late_removal_from_the_old_gateway_leaves_the_new_ones_forwards() -> None:
    """gw1 comes back and takes its stale rules out (ForwardsRemoved from gw1): gw0 keeps the job's
    forwards, and gw1 does not want them back."""
    history, _ = moved_history()
    late = [*history, ev.ForwardsRemoved(job_id="j", gateway="gw1"),
            ev.PortsUnavailable(job_id="j", gateway="gw1", forwards=FWD, reason="late")]
    kept = restore_decision(late, "gw0", Limits())
    assert isinstance(kept, Restore) and kept.wanted.forwards == FWD0
    assert restore_decision(late, "gw1", Limits()) is None
    # The new gateway's own removal still counts.
    assert restore_decision([*late, ev.ForwardsRemoved(job_id="j", gateway="gw0")], "gw0", Limits()) is None


def test_a_move_is_acted_on_even_after_a_late_word_from_the_old_gateway() -> None:
    history, move = moved_history()
    pending = [*history[:-1], ev.ForwardsRemoved(job_id="j", gateway="gw1")]
    assert decide_forward(pending, move, Limits()) == Install([])
    assert decide_forward(history, move, Limits()) is None  # answered by gw0 itself


def test_a_moved_assignment_needs_only_the_external_ports_free() -> None:
    assert port_checks(["10.0.0.20"], FWD0, GW, moved=True) == [(GW, 20007)]
    assert port_checks(["10.0.0.20"], FWD0, GW) == [("10.0.0.20", 20500), (GW, 20007)]


def test_a_move_is_trusted_only_for_ports_its_old_gateway_forwarded_for_the_job() -> None:
    history, move = moved_history()
    forged = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], moved_from="gw1",
                              forwards=[ev.Forward(internal_port=22, external_port=20007)])
    decision = decide_forward([*history[:3], forged], forged, Limits(port_min=1))
    assert isinstance(decision, Refuse) and "never forwarded these ports" in decision.reason
    never = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD0, moved_from="gw1")
    assert isinstance(decide_forward([*started(), never], never, Limits()), Refuse)
    assert decide_forward(history[:5], move, Limits()) == Install([])


def test_a_refused_move_leaves_the_forwards_where_they_were_and_a_pending_one_does_not_take_them() -> None:
    history, move = moved_history()
    pending = history[:5]
    assert restore_decision(pending, "gw1", Limits()) is not None  # until gw0 confirms
    refused = [*pending, ev.PortsUnavailable(job_id="j", gateway="gw0", forwards=FWD0, reason="in use")]
    kept = restore_decision(refused, "gw1", Limits())
    assert isinstance(kept, Restore) and kept.wanted.forwards == FWD
    assert restore_decision(refused, "gw0", Limits()) is None
    # Given up on after it forwarded (keyhole-api's PortsUnavailable for that gateway): gone.
    given_up = [*history[:4], ev.PortsUnavailable(job_id="j", gateway="gw1", forwards=FWD)]
    assert restore_decision(given_up, "gw1", Limits()) is None


def test_a_port_just_moved_here_is_not_taken_as_open_from_its_old_gateways_word() -> None:
    view = JobView(job_id="j", state=JobState.AVAILABLE, gateway="gw0",
                   services=[Service(internal_port=20500, external_port=20000, gateway="gw1", open=True)])
    book = ProbeBook(Timing(fast_probe=1.0, slow_probe=10.0))
    book.due({"j": [rule()]}, {"j": view}, now=100.0, gateway="gw0")
    opened = book.answer(("j", 20000), True, "gw0")
    assert isinstance(opened, ev.PortOpen) and opened.gateway == "gw0"  # reported here, for gw0
