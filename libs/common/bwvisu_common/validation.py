"""What may enter a batch script. Values end up inside a shell script, so the rules are
allow-lists, checked by runner-api at the door and again by scheduler-adapter before it
renders (DESIGN.md section 4)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from bwvisu_common.errors import InvalidInput

MAX_VARIABLES = 64
MAX_VALUE_LENGTH = 256

# ASCII only: look-alike letters from other scripts must not pass as [a-z].
_VALUE = re.compile(r"[A-Za-z0-9./_-]*", re.ASCII)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", re.ASCII)
_UID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", re.ASCII)
_TEMPLATE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", re.ASCII)


def check_uid(uid: object) -> str:
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise InvalidInput("uid", "must be a user name: letters, digits, '_', '.', '-', at most 32")
    return uid


def check_template_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInput("template-name", "must be a non-empty string")
    if any(c in name for c in "/\\\n\r\0") or name in (".", ".."):
        raise InvalidInput("template-name", "must not contain '/', '\\' or a newline")
    if not _TEMPLATE.fullmatch(name):
        raise InvalidInput("template-name", "may only contain letters, digits, '_', '.', '-'")
    return name


def check_variables(variables: object) -> dict[str, str]:
    if not isinstance(variables, Mapping):
        raise InvalidInput("variables", "must be an object of names to strings")
    if len(variables) > MAX_VARIABLES:
        raise InvalidInput("variables", f"at most {MAX_VARIABLES} variables")
    checked: dict[str, str] = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(f"variables.{str(name)[:40]!s}", "a name of letters, digits, '_', '-'")
        checked[name] = check_value(name, value)
    return checked


def check_value(name: str, value: object) -> str:
    field = f"variables.{name}"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(field, "must be a string")
    text = str(value)
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidInput(field, f"longer than {MAX_VALUE_LENGTH} characters")
    if not _VALUE.fullmatch(text):
        raise InvalidInput(field, "may only contain A-Z a-z 0-9 . / _ -")
    if ".." in text.split("/"):
        raise InvalidInput(field, "must not contain a '..' path segment")
    return text
