from __future__ import annotations

import json

import pytest

from bwvisu_common.errors import ConfigError
from bwvisu_common.settings import host_port, load_settings, parse_settings

ORIGINAL = {
    "bwvisu-home-prefix": "/home",
    "gateway-nodes": [{"internal-ip": "10.0.0.5", "external-ip": "192.0.2.5", "user": "bwvisu", "port": 22}],
    "command-nodes": [{"ip": "10.0.0.2", "user": "bwvisu", "port": 22}],
    "keyholed-servers": ["10.0.0.9:4243"],
    "keyholed-port-range": {"min": 20000, "max": 20100},
    "keyholed-max-forwarders-per-job": 2,
    "etcd-servers": ["10.0.0.9:2379"],
    "forwarding-hostname-suffix": "-ib",
    "debug": {"keyholed-static-forwarding": True},
}


def parse(data: dict) -> object:
    return parse_settings(json.dumps(data).encode(), "bwvisu.json")


def test_the_original_bwvisu_fields_are_accepted_as_they_are():
    s = parse(ORIGINAL)
    assert s.gateway_nodes[0].external_ip == "192.0.2.5"
    assert s.gateway_nodes[0].label == "10.0.0.5"
    assert s.keyholed_port_range.max == 20100 and s.debug.keyholed_static_forwarding
    assert s.forwarding_hostname_suffix == "-ib"
    assert s.scheduler.poll_interval == 2.0 and s.runner_api.port == 4242
    assert s.finished_jobs_kept_for == 7.0 and s.stream_max_age == 180.0 and s.stream_max_bytes > 0
    assert not s.restrict_forwards_to_clients  # off unless a site knows its clients' addresses
    assert parse({**ORIGINAL, "restrict-forwards-to-clients": True}).restrict_forwards_to_clients


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"bwvisu-home-prefix": None}, "bwvisu-home-prefix"),
        ({"command-nodes": []}, "command-nodes"),
        ({"keyholed-port-range": {"min": 30000, "max": 20000}}, "keyholed-port-range"),
        ({"keyholed-port-range": {"min": 20000}}, "max"),
        ({"gateway-nodes": [{"internal-ip": "10.0.0.5"}]}, "external-ip"),
        ({"command-nodes": [{"ip": 7}]}, "command-nodes[0].ip"),
        ({"keyholed-max-forwarders-per-job": 0}, "keyholed-max-forwarders-per-job"),
        ({"gateway-nodez": []}, "gateway-nodez"),
        ({"etcd-servers": ["host:notaport"]}, "etcd-servers[0]"),
        ({"keyhole-api": {"max-body-bytes": 10}}, "keyhole-api.max-body-bytes"),
        ({"stream-max-bytes": -1}, "stream-max-bytes"),
        ({"stream-max-events-per-job": 5}, "stream-max-events-per-job"),
        ({"finished-jobs-kept-for": 0}, "finished-jobs-kept-for"),
        ({"finished-jobs-kept-for": 30, "stream-max-age": 10}, "stream-max-age"),
        ({"scheduler": {"min-uid": 0}}, "scheduler.min-uid"),
        ({"scheduler": {"min-uid": 1000, "max-uid": 999}}, "scheduler.max-uid"),
        ({"scheduler": {"required-group": 5}}, "scheduler.required-group"),
        ({"restrict-forwards-to-clients": "yes"}, "restrict-forwards-to-clients"),
    ],
)
def test_a_wrong_missing_or_unknown_field_is_named(change, named):
    data = {**ORIGINAL, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert named in str(err.value)


def test_a_missing_file_and_bad_json_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings(bad)


def test_relative_paths_resolve_beside_the_file(tmp_path):
    file = tmp_path / "bwvisu.json"
    file.write_text(json.dumps({**ORIGINAL, "state-dir": "state", "ssh": {"key-file": "id"}}))
    s = load_settings(file)
    assert s.state_dir == str(tmp_path / "state") and s.ssh.key_file == str(tmp_path / "id")


def test_host_port_accepts_urls_and_bare_hosts():
    assert host_port("nats://10.1.1.1:4333", 4222) == ("10.1.1.1", 4333)
    assert host_port("etcd1", 2379) == ("etcd1", 2379)
    assert host_port("127.0.0.1:2380", 2379) == ("127.0.0.1", 2380)


def test_the_shipped_configs_load():
    from pathlib import Path

    deploy = Path(__file__).resolve().parents[2] / "deploy" / "config"
    for name in ("local.json", "example.json"):
        settings = load_settings(deploy / name)
        assert settings.command_nodes, name
    example = load_settings(deploy / "example.json")
    assert example.stream_replicas == 3 and len(example.etcd_servers) == 3
    assert example.web.auth == "header" and example.web.trusted_proxies == ["127.0.0.1"]


def test_credentials_default_under_the_state_dir_with_tls_and_a_wrong_field_is_named(tmp_path):
    file = tmp_path / "bwvisu.json"
    file.write_text(json.dumps({**ORIGINAL, "state-dir": "state"}))
    creds = load_settings(file).credentials
    assert creds.dir == str(tmp_path / "state" / "credentials") and creds.required
    assert creds.ca_file == str(tmp_path / "state" / "credentials" / "tls" / "ca.crt")
    file.write_text(json.dumps({**ORIGINAL, "credentials": {"dir": "c", "tls": False}}))
    creds = load_settings(file).credentials
    assert creds.dir == str(tmp_path / "c") and creds.ca_file == ""
    with pytest.raises(ConfigError, match=r"unknown field `ca-fil` - at `\$\.credentials`"):
        parse({**ORIGINAL, "credentials": {"ca-fil": "x"}})
    with pytest.raises(ConfigError, match=r"credentials\.tls"):
        parse({**ORIGINAL, "credentials": {"tls": "yes"}})


def test_a_service_without_its_credential_file_is_told_which_file(tmp_path):
    from bwvisu_common.connect import nats_auth

    file = tmp_path / "bwvisu.json"
    file.write_text(json.dumps({**ORIGINAL, "state-dir": "state"}))
    with pytest.raises(ConfigError, match=r"credentials\.dir: no password file .*gateway-10_0_0_5\.password"):
        nats_auth(load_settings(file), "gateway-10_0_0_5")


def test_the_portal_takes_one_runner_api_url_or_a_list_of_replicas():
    from web_portal.bootstrap import runner_api_urls

    one = parse({**ORIGINAL, "web": {"runner-api-url": "http://mw0:8000/"}})
    many = parse({**ORIGINAL, "web": {"runner-api-url": ["http://mw0:8000", "http://mw1:8000"]}})
    assert runner_api_urls(one) == ["http://mw0:8000"]  # type: ignore[arg-type]
    assert runner_api_urls(many) == ["http://mw0:8000", "http://mw1:8000"]  # type: ignore[arg-type]
