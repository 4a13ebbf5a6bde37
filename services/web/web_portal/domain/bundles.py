"""App bundles: one file per application, mapping a form to a batch-script template's variables.

A bundle is `templates/<name>.app.json` next to the template it starts. It is read once at
start; anything wrong is a BundleError naming the file and the field, so a typo stops the
portal with a clear message instead of showing a form that cannot work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NoReturn

import msgspec

from bwvisu_common.app_links import URL_PLACEHOLDERS, placeholders
from bwvisu_common.errors import InvalidInput
from bwvisu_common.needs import Needs, needs_problem
from bwvisu_common.validation import check_template_name, check_value, check_variables
from web_portal.errors import BundleError

SUFFIX = ".app.json"
ICONS = ("app", "desktop", "notebook", "cube", "chart")

Fail = Callable[[str, str], NoReturn]
FieldType = Literal["integer", "choice", "text", "checkbox"]


class _Strict(msgspec.Struct, frozen=True, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    pass


class FormField(_Strict, frozen=True, kw_only=True):
    """One input of the launch form; its value becomes the template variable `name`."""

    name: str
    type: FieldType
    label: str
    help: str = ""
    default: int | str | bool | None = None
    min: int | None = None
    max: int | None = None
    choices: list[str] = []
    max_length: int = 128

    @property
    def default_text(self) -> str:
        if self.default is None:
            return str(self.min) if self.type == "integer" and self.min is not None else ""
        if isinstance(self.default, bool):
            return "1" if self.default else ""
        return str(self.default)


class Bundle(_Strict, frozen=True, kw_only=True):
    """An application as the portal offers it."""

    name: str = ""  # the file name without SUFFIX; set by the loader
    title: str
    description: str = ""
    icon: str = "app"
    template: str
    # e.g. "http://{host}:{port}/index.html?autoconnect=true&password={secret}"; "" = no button
    connect_url: str = ""
    runtime_field: str = ""  # the integer field holding the run time in minutes
    fields: list[FormField] = []
    # What it needs on the compute nodes; the portal offers it only where the cluster has it.
    needs: Needs = Needs()

    def field(self, name: str) -> FormField | None:
        return next((f for f in self.fields if f.name == name), None)


def bundle_name(file_name: str) -> str:
    return file_name[: -len(SUFFIX)] if file_name.endswith(SUFFIX) else file_name


def parse_bundle(file_name: str, data: bytes) -> Bundle:
    """The bundle in `data` (read from `file_name`), checked; BundleError otherwise."""
    try:
        bundle = msgspec.json.decode(data, type=Bundle)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = message.rsplit("at `$.", 1)[-1].rstrip("`") if "at `$." in message else "(top level)"
        raise BundleError(file_name, field, message) from exc
    except msgspec.DecodeError as exc:
        raise BundleError(file_name, "(file)", f"not valid JSON: {exc}") from exc
    bundle = msgspec.structs.replace(bundle, name=bundle_name(file_name))
    check_bundle(file_name, bundle)
    return bundle


def check_bundle(file_name: str, bundle: Bundle) -> None:
    def fail(field: str, problem: str) -> NoReturn:
        raise BundleError(file_name, field, problem)

    try:
        check_template_name(bundle.name)
    except InvalidInput:
        fail("(file name)", "must be <letters, digits, '_', '.', '-'>.app.json")
    if not bundle.title.strip():
        fail("title", "must not be empty")
    try:
        check_template_name(bundle.template)
    except InvalidInput as exc:
        fail("template", exc.problem)
    if bundle.icon not in ICONS:
        fail("icon", f"must be one of {', '.join(ICONS)}")
    _check_connect_url(bundle.connect_url, fail)
    seen: set[str] = set()
    for i, f in enumerate(bundle.fields):
        where = f"fields[{i}]"
        if f.name in seen:
            fail(f"{where}.name", f"{f.name!r} appears twice")
        seen.add(f.name)
        _check_field(f, where, fail)
    if bundle.runtime_field:
        runtime = bundle.field(bundle.runtime_field)
        if runtime is None or runtime.type != "integer":
            fail("runtime-field", f"must name an integer field, not {bundle.runtime_field!r}")
    problem = needs_problem(bundle.needs)
    if problem is not None:
        fail(f"needs.{problem[0]}", problem[1])


def _check_connect_url(url: str, fail: Fail) -> None:
    if not url:
        return
    if not url.startswith(("http://", "https://")):
        fail("connect-url", "must start with http:// or https://")
    try:
        names = placeholders(url)
    except ValueError as exc:
        fail("connect-url", f"bad placeholder: {exc}")
    unknown = names - URL_PLACEHOLDERS
    if unknown:
        fail("connect-url",
             f"unknown placeholder {sorted(unknown)[0]!r}; use {{host}}, {{port}}, {{job_id}}, {{secret}}")


def _check_field(f: FormField, where: str, fail: Fail) -> None:
    try:
        check_variables({f.name: ""})
    except InvalidInput:
        fail(f"{where}.name", "must be a variable name: letters, digits, '_', '-'")
    if not f.label.strip():
        fail(f"{where}.label", "must not be empty")
    if (f.min is not None or f.max is not None) and f.type != "integer":
        fail(f"{where}.min", "min and max are for integer fields")
    if f.choices and f.type != "choice":
        fail(f"{where}.choices", "choices are for choice fields")
    if f.type == "integer":
        _check_integer(f, where, fail)
    elif f.type == "choice":
        if not f.choices:
            fail(f"{where}.choices", "a choice field needs at least one choice")
        for j, choice in enumerate(f.choices):
            _check_text_value(choice, f"{where}.choices[{j}]", fail)
        if f.default is not None and f.default not in f.choices:
            fail(f"{where}.default", f"{f.default!r} is not one of the choices")
    elif f.type == "text":
        if not 1 <= f.max_length <= 256:
            fail(f"{where}.max-length", "must be between 1 and 256")
        if f.default is not None:
            if not isinstance(f.default, str):
                fail(f"{where}.default", "must be a string")
            _check_text_value(str(f.default), f"{where}.default", fail)
    elif f.type == "checkbox" and f.default is not None and not isinstance(f.default, bool):
        fail(f"{where}.default", "must be true or false")


def _check_integer(f: FormField, where: str, fail: Fail) -> None:
    if f.min is not None and f.max is not None and f.min > f.max:
        fail(f"{where}.max", f"max {f.max} is below min {f.min}")
    if f.default is None:
        return
    if isinstance(f.default, bool) or not isinstance(f.default, int):
        fail(f"{where}.default", "must be a whole number")
    if (f.min is not None and f.default < f.min) or (f.max is not None and f.default > f.max):
        fail(f"{where}.default", f"{f.default} is outside {f.min}..{f.max}")


def _check_text_value(value: str, where: str, fail: Fail) -> None:
    try:
        check_value("x", value)
    except InvalidInput as exc:
        fail(where, exc.problem)
