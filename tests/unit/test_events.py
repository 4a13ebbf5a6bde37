from __future__ import annotations

import msgspec
import pytest

from bwvisu_common import events as ev
from bwvisu_common.job_facts import FailureKind, Why, WhyKind

SAMPLES = [
    ev.JobSubmitted(job_id="j", uid="alice", template_name="xpra", variables={"runtime": "60"}),
    ev.JobQueued(job_id="j", slurm_id="17", command_node="login0"),
    ev.JobSubmitFailed(job_id="j", reason="sbatch: error", kind=FailureKind.REJECTED),
    ev.JobAdopted(job_id="j", slurm_id="18"),
    ev.JobStarted(job_id="j", nodes=["cn0", "cn1"]),
    ev.JobDetailsChanged(job_id="j", details="Resources"),
    ev.JobDetailsChanged.saying("j", Why(WhyKind.QUEUED_WAITING, "Resources")),
    ev.JobCompleting(job_id="j"),
    ev.JobEnded(job_id="j", slurm_state="COMPLETED", exit_code=0),
    ev.JobCancelRequested(job_id="j"),
    ev.PortsRequested(job_id="j", count=1, nodes=["cn0"]),
    ev.PortsRefused(job_id="j", reason="second request"),
    ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"],
                     forwards=[ev.Forward(internal_port=20001, external_port=20001)]),
    ev.PortsForwarded(job_id="j", gateway="gw0",
                      forwards=[ev.Forward(internal_port=20001, external_port=20001)]),
    ev.PortsUnavailable(job_id="j", gateway="gw0", forwards=[], reason="in use"),
    ev.PortOpen(job_id="j", external_port=20001),
    ev.PortClosed(job_id="j", external_port=20001),
    ev.ForwardsRemoved(job_id="j", gateway="gw0"),
    ev.ClientAddressAllowed(job_id="j", address="192.0.2.7"),
    ev.JobExtensionRequested(job_id="j", minutes=30),
    ev.JobExtended(job_id="j", request_id="r", minutes=30, time_limit=90),
    ev.JobExtensionRefused(job_id="j", request_id="r", reason="the session is not running"),
    ev.JobTimeLimitRead(job_id="j", time_limit=60),
    ev.JobCancelRequested(job_id="j", reason="idle"),
    ev.SessionActivity(job_id="j", gateway="gw0", last_activity=ev.utcnow()),
]


def test_every_event_type_round_trips_through_the_codec():
    assert {type(e) for e in SAMPLES} == set(ev.AnyEvent.__args__)
    for event in SAMPLES:
        assert ev.decode(ev.encode(event)) == event


def test_every_event_has_an_id_a_job_and_a_time_and_is_tagged():
    ids = {e.event_id for e in SAMPLES}
    assert len(ids) == len(SAMPLES)
    raw = msgspec.json.decode(ev.encode(SAMPLES[0]))
    assert raw["type"] == "JobSubmitted" and raw["job_id"] == "j" and raw["time"].endswith("Z")


def test_events_are_immutable():
    with pytest.raises(AttributeError):
        SAMPLES[0].uid = "mallory"  # type: ignore[misc]


def test_an_unknown_event_type_is_a_decode_error():
    with pytest.raises(msgspec.ValidationError):
        ev.decode(b'{"type":"JobExploded","job_id":"j","event_id":"e","time":"2026-01-01T00:00:00Z"}')


def test_a_gateway_speaks_only_of_its_own_ports() -> None:
    from bwvisu_common.adapters.jetstream import may_say

    mine = ev.PortOpen(job_id="j", external_port=20001, gateway="gw0")
    assert may_say("gateway-gw0", mine) and not may_say("gateway-gw1", mine)
    assert not may_say("gateway-gw0", ev.PortOpen(job_id="j", external_port=20001)), "unnamed"
    assert not may_say("gateway-gw0", ev.JobEnded(job_id="j", slurm_state="COMPLETED"))
    assert may_say("runner-api", ev.JobCancelRequested(job_id="j"))
    traffic = ev.SessionActivity(job_id="j", gateway="gw0", last_activity=ev.utcnow())
    assert may_say("gateway-gw0", traffic) and not may_say("gateway-gw1", traffic)
    assert not may_say("gateway-gw0", ev.JobCancelRequested(job_id="j", reason="idle"))


def _old(**fields: object) -> bytes:
    return msgspec.json.encode({"job_id": "j", "event_id": "e1", "time": "2025-06-01T10:00:00Z", **fields})


def test_events_an_earlier_version_wrote_still_decode_with_typed_facts():
    note = ev.decode(_old(type="JobDetailsChanged", details="waiting: Resources"))
    assert isinstance(note, ev.JobDetailsChanged) and note.why is None
    assert note.details == "waiting: Resources"
    failed = ev.decode(_old(type="JobSubmitFailed", reason="no such user: carol", kind="unknown-user"))
    assert isinstance(failed, ev.JobSubmitFailed) and failed.kind is FailureKind.UNKNOWN_USER
    oldest = ev.decode(_old(type="JobSubmitFailed", reason="nope"))  # before `kind` existed
    assert isinstance(oldest, ev.JobSubmitFailed) and oldest.kind is FailureKind.REJECTED


def test_a_typed_note_still_carries_its_words_for_an_earlier_reader():
    note = ev.JobDetailsChanged.saying("j", Why(WhyKind.SCHEDULER_UNREACHABLE, "x"))
    raw = msgspec.json.decode(ev.encode(note))
    assert raw["details"] == "Slurm cannot be asked right now: x"
    assert raw["why"] == {"kind": "scheduler-unreachable", "text": "x"}
    assert msgspec.json.decode(ev.encode(ev.JobSubmitFailed(job_id="j", reason="r")))["kind"] == "rejected"
