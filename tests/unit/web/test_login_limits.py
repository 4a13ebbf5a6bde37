"""The bookkeeping of failed logins, and where a request comes from."""

from __future__ import annotations

import json

import pytest

from bwvisu_common.errors import ConfigError
from bwvisu_common.settings import parse_settings
from web_portal.bootstrap import trusted_networks
from web_portal.domain.client_address import client_address, parse_networks
from web_portal.domain.login_limits import LoginLimits, Refused


def fail(limits: LoginLimits, address: str, now: float) -> Refused | None:
    return limits.begin(address, now)  # counted as a failure unless `succeeded` takes it back


def test_an_address_gets_n_failures_per_window_then_a_wait_until_the_oldest_expires():
    limits = LoginLimits(per_address=3, total=100, window=60)
    for t in (0.0, 10.0, 20.0):
        assert fail(limits, "198.51.100.7", t) is None
    assert fail(limits, "198.51.100.7", 30.0) == Refused("address", 30)
    assert fail(limits, "203.0.113.9", 30.0) is None, "another address is not blocked"
    assert fail(limits, "198.51.100.7", 59.5) == Refused("address", 1)
    assert fail(limits, "198.51.100.7", 60.0) is None, "the first failure left the window"
    assert fail(limits, "198.51.100.7", 61.0) == Refused("address", 9)


def test_all_addresses_together_get_m_failures_per_window():
    limits = LoginLimits(per_address=5, total=4, window=100)
    for i in range(4):
        assert fail(limits, f"10.0.0.{i}", float(i)) is None
    assert fail(limits, "10.0.0.99", 50.0) == Refused("total", 50)
    assert fail(limits, "10.0.0.99", 100.5) is None


def test_a_success_takes_back_its_own_attempt_only():
    limits = LoginLimits(per_address=2, total=100, window=60)
    assert fail(limits, "a", 1.0) is None
    assert fail(limits, "b", 1.0) is None
    assert fail(limits, "a", 2.0) is None
    limits.succeeded("a", 2.0)
    assert limits.failures("a") == 1, "the earlier failure of the same address still counts"
    assert limits.failures("b") == 1, "nor does it touch another address"
    assert fail(limits, "a", 3.0) is None
    assert fail(limits, "a", 4.0) == Refused("address", 57)


def test_parallel_attempts_are_counted_before_their_answer():
    limits = LoginLimits(per_address=3, total=100, window=60)
    started = [fail(limits, "a", 1.0) for _ in range(10)]  # none answered yet
    assert started.count(None) == 3


def test_memory_stays_bounded_whatever_the_number_of_addresses():
    limits = LoginLimits(per_address=5, total=50, window=10)
    for i in range(100_000):
        limits.begin(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", i / 1000)
        assert limits.tracked_addresses <= 50
    hard = LoginLimits(per_address=5, total=10_000, window=1e9, max_addresses=100)
    for i in range(5_000):
        hard.begin(f"a{i}", 0.0)
    assert hard.tracked_addresses == 100


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        LoginLimits(per_address=0, total=1, window=1)


PROXIES = parse_networks(["10.1.0.0/16", "192.0.2.5"])


@pytest.mark.parametrize(("peer", "xff", "expected"), [
    ("198.51.100.7", ["1.2.3.4"], "198.51.100.7"),  # not from a proxy: its header means nothing
    ("192.0.2.5", [], "192.0.2.5"),
    ("192.0.2.5", ["203.0.113.9"], "203.0.113.9"),
    ("192.0.2.5", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),  # the client made up the left part
    ("192.0.2.5", ["6.6.6.6", "203.0.113.9, 10.1.2.3"], "203.0.113.9"),  # two lines, one list
    ("192.0.2.5", ["10.1.9.9, 10.1.2.3"], "10.1.9.9"),  # only proxies: the left-most of them
    ("192.0.2.5", ["[2001:db8::1]:4711"], "2001:db8::1"),
    ("192.0.2.5", ["203.0.113.9:4711"], "203.0.113.9"),
    (None, ["1.2.3.4"], "unknown"),
])
def test_the_client_address_is_the_right_most_hop_not_of_a_trusted_proxy(peer, xff, expected):
    assert client_address(peer, xff, PROXIES) == expected


def test_a_bad_trusted_proxy_entry_is_named():
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_networks(["10.0.0.0/8", "10.0.0.300"])


@pytest.mark.parametrize(("web", "named"), [
    ({"login-window": 0}, "web.login-window"),
    ({"login-max-failures-per-address": 0}, "web.login-max-failures-per-address"),
    ({"login-max-failures": -1}, "web.login-max-failures"),
    ({"revocation-check-interval": -1}, "web.revocation-check-interval"),
])
def test_the_limits_in_the_config_must_be_positive(web, named):
    data = {"bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.2"}], "web": web}
    with pytest.raises(ConfigError, match=named):
        parse_settings(json.dumps(data).encode(), "bwvisu.json")


def test_a_bad_trusted_proxy_in_the_config_names_the_field():
    data = {"bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.2"}],
            "web": {"trusted-proxies": ["proxy.example.org"]}}
    with pytest.raises(ConfigError, match=r"web\.trusted-proxies: .*proxy\.example\.org"):
        trusted_networks(parse_settings(json.dumps(data).encode(), "bwvisu.json"))
