"""The key layout: what one service writes, another parses back."""

from __future__ import annotations

from bwvisu_common import state_keys as keys


def test_port_keys_parse_back_to_their_host_and_port() -> None:
    gateway_key, node_key = keys.port_key("gw-1", 20001), keys.node_port_key("n0", 31000)
    assert (keys.host_of(gateway_key), keys.port_of(gateway_key)) == ("gw-1", 20001)
    assert (keys.host_of(node_key), keys.port_of(node_key)) == ("n0", 31000)
    assert gateway_key.startswith(keys.gateway_ports("gw-1"))
    assert not gateway_key.startswith(keys.gateway_ports("gw")), "a gateway's prefix ends at its name"
    assert gateway_key.startswith(keys.gateway_ports()) and not node_key.startswith(keys.gateway_ports())


def test_secret_names_name_their_job() -> None:
    assert keys.secret_job(keys.token_key("123")) == "123"
    assert keys.secret_job(keys.session_secret_key("123")) == "123"
    assert keys.secret_job("other/123") == ""
    assert keys.token_key("1") != keys.session_secret_key("1")


def test_held_by_lists_one_owner_s_keys() -> None:
    held = {keys.grant_key("a"): "a", keys.port_key("gw0", 1): "b", keys.port_key("gw0", 2): "a"}
    assert keys.held_by(held, "a") == [keys.grant_key("a"), keys.port_key("gw0", 2)]


def test_the_scheduler_adapters_roles_lie_in_their_own_area() -> None:
    roles = [keys.WATCHER_ROLE, keys.submission_role("j1"), keys.submission_role("j2")]
    assert len(set(roles)) == 3
    assert all(role.startswith(keys.SCHEDULER_ROLES) for role in roles)  # what access.py grants
    assert not keys.submission_role("watcher").startswith(keys.WATCHER_ROLE), "no job's claim is the watcher"
