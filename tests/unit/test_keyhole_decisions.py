"""keyhole-api's pure decisions: the standing grant, an assignment's outcome, the reservation pick,
and the one table that turns a refusal into an HTTP status."""

from __future__ import annotations

import random

import msgspec
import pytest

from bwvisu_common import state_keys as keys
from bwvisu_common.events import Forward
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView, Service
from keyhole_api.app import STATUS, status_of
from keyhole_api.domain.allocate import Avoid, Reservation, candidate_gateways, pick_reservation
from keyhole_api.domain.grant import Grant, Outcome, answer, outcome, settled, standing_grant, stuck
from keyhole_api.domain.verify import PortRequest
from keyhole_api.errors import Refusal, Refused


def _forwarded(gateway: str = "gw0", count: int = 2, state: str = JobState.AVAILABLE) -> JobView:
    services = [Service(internal_port=30000 + i, external_port=20000 + i, gateway=gateway)
                for i in range(count)]
    return JobView(job_id="j1", state=state, gateway=gateway, services=services, ports_granted=True, seq=7)


def test_every_refusal_has_one_client_error_status() -> None:
    assert set(STATUS) == set(Refusal)
    assert all(400 <= status < 500 for status in STATUS.values())
    assert status_of(Refused(Refusal.NOT_AUTHENTIC, "bad signature")) == 401
    assert status_of(Refused(Refusal.UNKNOWN_JOB, "gone")) == 404


def test_a_standing_grant_answers_a_retry_of_the_same_size() -> None:
    grant = standing_grant(_forwarded(), PortRequest(count=2, nodes=["cn0"]), {"gw0", "gw1"})
    assert grant == Grant("gw0", [Forward(internal_port=30000, external_port=20000),
                                  Forward(internal_port=30001, external_port=20001)])
    with pytest.raises(Refused) as refused:
        standing_grant(_forwarded(), PortRequest(count=1, nodes=["cn0"]), {"gw0"})
    assert refused.value.why is Refusal.ALREADY_GRANTED


def test_while_forwards_move_a_retry_is_answered_with_the_gateway_that_forwards_them() -> None:
    # Moved to gw1 (PortsAssigned), not yet forwarded there: the services are still gw0's ports.
    moving = msgspec.structs.replace(_forwarded("gw0"), gateway="gw1")
    grant = standing_grant(moving, PortRequest(count=2, nodes=["cn0"]), {"gw0", "gw1"})
    assert grant is not None and grant.gateway == "gw0"
    assert grant.forwards[0].external_port == 20000
    assert outcome(moving, "gw1") is not Outcome.FORWARDED


def test_no_standing_grant_while_none_is_forwarded_or_its_gateway_is_gone() -> None:
    req = PortRequest(count=2, nodes=["cn0"])
    assert standing_grant(None, req, {"gw0"}) is None
    assert standing_grant(JobView(job_id="j1", state=JobState.RUNNING), req, {"gw0"}) is None
    assert standing_grant(_forwarded("gw9"), req, {"gw0"}) is None, "a gateway no longer configured"
    with pytest.raises(Refused) as refused:
        standing_grant(JobView(job_id="j1", state=JobState.FINISHED), req, {"gw0"})
    assert refused.value.why is Refusal.NOT_RUNNING


def test_the_outcome_of_an_assignment() -> None:
    assert outcome(_forwarded("gw0"), "gw0") is Outcome.FORWARDED
    assert outcome(None, "gw0") is Outcome.NO_ANSWER
    assert outcome(JobView(job_id="j1", state=JobState.RUNNING), "gw0") is Outcome.PORTS_BUSY
    assert outcome(_forwarded("gw1"), "gw0") is Outcome.PORTS_BUSY, "forwarded elsewhere is not this one"
    assert outcome(JobView(job_id="j1", state=JobState.FINISHED), "gw0") is Outcome.JOB_ENDED


def test_an_assignment_is_settled_once_the_agent_answered_it() -> None:
    waiting = JobView(job_id="j1", state=JobState.RUNNING, ports_granted=True, seq=5)
    assert not settled(waiting, 5), "assigned, not answered yet"
    assert settled(_forwarded(), 7) and not settled(_forwarded(), 8)
    assert settled(JobView(job_id="j1", state=JobState.RUNNING, ports_granted=False, seq=6), 5), "refused"
    assert settled(JobView(job_id="j1", state=JobState.FINISHED, ports_granted=True, seq=6), 5)


def test_a_grant_is_stuck_only_after_a_while_without_progress() -> None:
    assert stuck(100.0, now=190.0, stale_after=90.0)
    assert not stuck(100.0, now=189.0, stale_after=90.0)
    assert not stuck(None, now=1e9, stale_after=90.0), "no progress known: not taken over"


def test_the_answer_names_the_gateway_s_external_address() -> None:
    body = answer("j1", Grant("gw0", [Forward(internal_port=1, external_port=2)]), "1.2.3.4")
    assert body == {"job-id": "j1", "gateway": "gw0", "forwards": [
        {"internal-port": 1, "external-port": 2, "external-ip": "1.2.3.4", "gateway": "gw0"}]}


def test_candidate_gateways_are_live_configured_not_avoided_and_least_loaded_first() -> None:
    held = {keys.port_key("gw0", 1): "a", keys.port_key("gw0", 2): "b", keys.port_key("gw1", 1): "c"}
    alive, known = ["gw0", "gw1", "gw2", "stranger"], {"gw0", "gw1", "gw2", "gw3"}
    assert candidate_gateways(alive, known, Avoid(), held) == ["gw2", "gw1", "gw0"]
    assert candidate_gateways(alive, known, Avoid(gateways={"gw2"}), held) == ["gw1", "gw0"]


def test_the_pick_skips_held_and_avoided_ports_and_reserves_them_on_every_node() -> None:
    held = {keys.port_key("gw0", 10): "a", keys.port_key("gw1", 11): "b"}
    node_held = {keys.node_port_key("cn0", 12): "a", keys.node_port_key("cn9", 13): "c"}
    avoid = Avoid(external={("gw0", 11)})
    picked = pick_reservation("gw0", 1, ["cn0", "cn1"], held=held, node_held=node_held, avoid=avoid,
                              port_range=(10, 13), static=True, rng=random.Random(1))
    # 10 held and 11 avoided on gw0; 12 held on cn0 (13 is held only on a node not the job's).
    assert picked == Reservation("gw0", [Forward(internal_port=13, external_port=13)],
                                 [keys.port_key("gw0", 13), keys.node_port_key("cn0", 13),
                                  keys.node_port_key("cn1", 13)])
    assert pick_reservation("gw0", 2, ["cn0"], held=held, node_held=node_held, avoid=avoid,
                            port_range=(10, 13), static=True) is None, "only one port is left"


def test_ports_found_busy_are_avoided_next_time() -> None:
    avoid = Avoid()
    avoid.ports_of(Reservation("gw1", [Forward(internal_port=5, external_port=6)], []))
    assert avoid.external == {("gw1", 6)} and avoid.internal == {5}
