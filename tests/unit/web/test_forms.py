"""The launch form is checked on the server against the bundle's limits."""

from __future__ import annotations

import pytest

from tests.unit.web.conftest import xpra_bundle
from web_portal.domain.forms import initial_values, validate_form

GOOD = {"runtime": "30", "cores": "2", "partition": "gpu", "csrf": "ignored"}


def test_good_input_becomes_the_template_variables():
    result = validate_form(xpra_bundle(), GOOD)
    assert result.ok and result.variables == {"runtime": "30", "cores": "2", "partition": "gpu"}


def test_the_form_starts_with_the_bundles_defaults():
    assert initial_values(xpra_bundle()) == {"runtime": "60", "cores": "1", "partition": "debug"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("runtime", "4", "At least 5"),
        ("runtime", "241", "At most 240"),
        ("runtime", "", "whole number"),
        ("runtime", "3.5", "whole number"),
        ("runtime", "30; reboot", "whole number"),
        ("runtime", "--30", "whole number"),
        ("runtime", "٣٠", "whole number"),
        ("cores", "9", "At most 8"),
        ("partition", "admin", "Choose one of: debug, gpu"),
        ("partition", "", "Choose one of"),
    ],
)
def test_values_outside_the_bundles_limits_are_refused(field, value, message):
    result = validate_form(xpra_bundle(), {**GOOD, field: value})
    assert not result.ok and message in result.errors[field]
    assert list(result.errors) == [field] and result.values[field] == value


def test_a_missing_field_is_an_error_not_a_default():
    result = validate_form(xpra_bundle(), {"runtime": "30", "partition": "debug"})
    assert list(result.errors) == ["cores"]
