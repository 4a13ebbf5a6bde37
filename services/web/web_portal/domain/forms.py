"""The launch form: what a person typed, checked against the bundle's limits. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from bwvisu_common.errors import InvalidInput
from bwvisu_common.validation import check_value
from web_portal.domain.bundles import Bundle, FormField

_INTEGER = re.compile(r"-?[0-9]{1,12}", re.ASCII)


class FormResult(msgspec.Struct, frozen=True, kw_only=True):
    """The template variables if `ok`; else `errors` (field name -> message) to show next to the inputs."""

    variables: dict[str, str] = {}
    values: dict[str, str] = {}  # what to put back into the form
    errors: dict[str, str] = {}

    @property
    def ok(self) -> bool:
        return not self.errors


def initial_values(bundle: Bundle, earlier: Mapping[str, str] | None = None) -> dict[str, str]:
    """The form's first values: a job's `earlier` variables where it has them, else the defaults.
    Only the bundle's fields; the values are checked again when the form is sent."""
    earlier = earlier or {}
    return {f.name: earlier.get(f.name, f.default_text) for f in bundle.fields}


def validate_form(bundle: Bundle, form: Mapping[str, str]) -> FormResult:
    """Check every field of the bundle; fields the bundle does not have are ignored."""
    variables: dict[str, str] = {}
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for field in bundle.fields:
        raw = form.get(field.name, "")
        values[field.name] = raw
        try:
            variables[field.name] = check_field(field, raw)
        except ValueError as exc:
            errors[field.name] = str(exc)
    return FormResult(variables=variables, values=values, errors=errors)


def check_field(field: FormField, raw: str) -> str:
    """The variable's value for input `raw`; ValueError with a message for a person otherwise."""
    if field.type == "checkbox":
        return "1" if raw else ""
    text = raw.strip()
    if field.type == "integer":
        return _integer(field, text)
    if field.type == "choice":
        if text not in field.choices:
            raise ValueError(f"Choose one of: {', '.join(field.choices)}.")
        return text
    if len(text) > field.max_length:
        raise ValueError(f"At most {field.max_length} characters.")
    try:
        return check_value(field.name, text)
    except InvalidInput as exc:
        raise ValueError(f"Not allowed: {exc.problem}.") from exc


def _integer(field: FormField, text: str) -> str:
    if not _INTEGER.fullmatch(text):
        raise ValueError("Enter a whole number.")
    value = int(text)
    if field.min is not None and value < field.min:
        raise ValueError(f"At least {field.min}.")
    if field.max is not None and value > field.max:
        raise ValueError(f"At most {field.max}.")
    return str(value)
