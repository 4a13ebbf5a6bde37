"""The `app-needs` configuration: how often the cluster is looked at, and the site's own list of programs."""

from __future__ import annotations

import json

import pytest

from bwvisu_common.errors import ConfigError
from bwvisu_common.settings import parse_settings
from tests.unit.test_settings import ORIGINAL


def parse(app_needs: object):  # type: ignore[no-untyped-def]
    return parse_settings(json.dumps({**ORIGINAL, "app-needs": app_needs}).encode(), "bwvisu.json")


def test_by_default_a_login_node_is_asked_every_five_minutes() -> None:
    s = parse_settings(json.dumps(ORIGINAL).encode())
    assert s.app_needs.check_interval == 300 and s.app_needs.compute_node_commands is None


def test_a_site_may_name_its_compute_nodes_programs() -> None:
    s = parse({"check-interval": 60, "compute-node-commands": ["singularity", "xpra"]})
    assert s.app_needs.check_interval == 60 and s.app_needs.compute_node_commands == ["singularity", "xpra"]


@pytest.mark.parametrize(("app_needs", "named"), [
    ({"check-interval": 1}, "app-needs.check-interval"),
    ({"compute-node-commands": ["xpra", "a;b"]}, "app-needs.compute-node-commands[1]"),
    ({"compute-node-commands": "xpra"}, "app-needs.compute-node-commands"),
    ({"commands": ["xpra"]}, "unknown field `commands` - at `$.app-needs`"),
])
def test_a_wrong_field_is_named(app_needs: object, named: str) -> None:
    with pytest.raises(ConfigError, match="^bwvisu.json: ") as err:
        parse(app_needs)
    assert named in str(err.value), str(err.value)
