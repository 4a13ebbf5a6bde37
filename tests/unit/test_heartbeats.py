"""GatewayHeartbeats: who is alive, from the subject a heartbeat came on, for `timeout` seconds."""

from __future__ import annotations

import msgspec

from bwvisu_common.heartbeats import GatewayHeartbeats, Heartbeat, heartbeat_subject


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_gateway_is_alive_until_silent_for_the_timeout() -> None:
    clock = Clock()
    beats = GatewayHeartbeats(timeout=5, clock=clock)
    assert beats.alive() == [] and beats.last("gw0") is None
    beats.beat("gw1", 3)
    beats.beat("gw0")
    clock.now += 5
    assert beats.alive() == ["gw0", "gw1"] and beats.last("gw1") == (5.0, 3)
    clock.now += 0.5
    assert beats.alive() == []


def test_forgetting_a_gateway_counts_it_dead_until_its_next_heartbeat() -> None:
    beats = GatewayHeartbeats(clock=Clock())
    beats.beat("gw0")
    beats.forget("gw0")
    assert beats.alive() == []
    beats.beat("gw0")
    assert beats.alive() == ["gw0"]


def test_a_heartbeat_speaks_for_its_subject_s_gateway_not_its_body_s() -> None:
    beats = GatewayHeartbeats(clock=Clock())
    body = msgspec.json.encode(Heartbeat(gateway="gw1", forwards=2))
    beats.heard(heartbeat_subject("gw0"), body)
    assert beats.alive() == ["gw0"] and beats.last("gw0") == (0.0, 2)
    beats.heard("bwvisu.gateways.gw2.other", body)  # not a heartbeat subject
    beats.heard(heartbeat_subject("gw3"), b"not json")  # undecodable
    assert beats.alive() == ["gw0"]
