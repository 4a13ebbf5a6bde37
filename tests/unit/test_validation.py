from __future__ import annotations

import pytest

from bwvisu_common.errors import InvalidInput
from bwvisu_common.validation import check_template_name, check_uid, check_variables

HOSTILE_VALUES = [
    "$(id)", "`id`", "a;id", "a\nid", "a'b", 'a"b', "../etc", "a/../../b", "a b", "a|b", "a&b",
    "a>b", "${HOME}", "\u0430lice",  # Cyrillic a
    "ａｂｃ", "a\u200bb", "x" * 257, "a\\b", "a*b", "~root", "a$b", "",
]


@pytest.mark.parametrize("value", [v for v in HOSTILE_VALUES if v])
def test_hostile_values_are_refused_naming_the_variable(value):
    with pytest.raises(InvalidInput) as err:
        check_variables({"image_name": value})
    assert err.value.field == "variables.image_name"


def test_plain_values_pass_and_numbers_become_strings():
    assert check_variables({"runtime": 60, "image": "apps/paraview-5.11.sif", "empty": ""}) == {
        "runtime": "60", "image": "apps/paraview-5.11.sif", "empty": ""}


@pytest.mark.parametrize("variables", [[], "x", {"bad name": "1"}, {"a": None}, {"a": True},
                                       {f"v{i}": "1" for i in range(65)}])
def test_malformed_variables_are_refused(variables):
    with pytest.raises(InvalidInput):
        check_variables(variables)


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "a\nb", "", "..", "x y", 5])
def test_bad_template_names_are_refused(name):
    with pytest.raises(InvalidInput) as err:
        check_template_name(name)
    assert err.value.field == "template-name"


@pytest.mark.parametrize("uid", ["root;id", "-rf", "a b", "", "\u0430lice", "x" * 33, None])
def test_implausible_user_names_are_refused(uid):
    with pytest.raises(InvalidInput):
        check_uid(uid)


def test_plausible_names_pass():
    assert check_uid("alice") == "alice" and check_uid("ab_12.x") == "ab_12.x"
    assert check_template_name("xpra-desktop") == "xpra-desktop"
