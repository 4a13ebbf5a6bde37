"""What a request body must be: POST /jobs, POST /jobs/<id>/clients and /extend, validated. Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import msgspec

from bwvisu_common.errors import InvalidInput
from bwvisu_common.validation import check_template_name, check_uid, check_variables


class Submission(msgspec.Struct, frozen=True, kw_only=True):
    uid: str
    template_name: str
    variables: dict[str, str]


def parse_submission(body: object) -> Submission:
    """Validate a POST /jobs body; InvalidInput names the first bad field."""
    if not isinstance(body, Mapping):
        raise InvalidInput("body", "must be a JSON object with uid, template-name and variables")
    unknown = set(body) - {"uid", "template-name", "variables"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a field of a job submission")
    for field in ("uid", "template-name"):
        if field not in body:
            raise InvalidInput(field, "is required")
    return Submission(
        uid=check_uid(body["uid"]),
        template_name=check_template_name(body["template-name"]),
        variables=check_variables(body.get("variables", {})),
    )


class ClientAddress(msgspec.Struct, frozen=True, kw_only=True):
    uid: str
    address: str


def parse_client_address(body: object) -> ClientAddress:
    """Validate a POST /jobs/<id>/clients body: the owner and one IPv4 address."""
    if not isinstance(body, Mapping):
        raise InvalidInput("body", "must be a JSON object with uid and address")
    unknown = set(body) - {"uid", "address"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a field of a client address")
    for field in ("uid", "address"):
        if field not in body:
            raise InvalidInput(field, "is required")
    address = body["address"]
    if not isinstance(address, str):
        raise InvalidInput("address", "must be a string")
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        # Gateways forward IPv4 only; an IPv6 client could never be let in.
        raise InvalidInput("address", f"{address[:64]!r} is not an IPv4 address") from None
    if str(parsed) != address or parsed.is_unspecified or parsed.is_multicast:
        raise InvalidInput("address", f"{address[:64]!r} is not one client's IPv4 address")
    return ClientAddress(uid=check_uid(body["uid"]), address=address)


MAX_EXTENSION_MINUTES = 100_000


class Extension(msgspec.Struct, frozen=True, kw_only=True):
    uid: str
    minutes: int


def parse_extension(body: object) -> Extension:
    """Validate a POST /jobs/<id>/extend body: the owner and the minutes to add."""
    if not isinstance(body, Mapping):
        raise InvalidInput("body", "must be a JSON object with uid and minutes")
    unknown = set(body) - {"uid", "minutes"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a field of an extension")
    for field in ("uid", "minutes"):
        if field not in body:
            raise InvalidInput(field, "is required")
    minutes = body["minutes"]
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_EXTENSION_MINUTES:
        raise InvalidInput("minutes", f"must be a whole number of minutes from 1 to {MAX_EXTENSION_MINUTES}")
    return Extension(uid=check_uid(body["uid"]), minutes=minutes)
