"""Pure translation between the original bwVisu API's JSON and our events and views."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import msgspec

from bwvisu_common.app_links import fill_connect_url
from bwvisu_common.errors import InvalidInput
from bwvisu_common.job_facts import render
from bwvisu_common.projections import JobView
from bwvisu_common.reasons import client_why
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


def job_json(job: JobView, external_ips: Mapping[str, str]) -> dict[str, Any]:
    """GET /jobs/<id> as the original middleware answered it, hyphenated names and all.

    `why` is ours: the typed reason behind `details` (a failed submission's made safe in both)."""
    why = client_why(job.failure, job.why)
    return {
        "job-id": job.job_id,
        "batch-script": {"template-name": job.template_name, "variables": dict(job.variables)},
        "services": [
            {
                "internal-port": s.internal_port,
                "external-port": s.external_port,
                "external-ip": external_ips.get(s.gateway, s.gateway),
            }
            for s in job.services
        ],
        "state": job.state.value,
        "uid": job.uid,
        "details": job.details if why is job.why else render(why),
        "why": {"kind": why.kind.value, "text": why.text},
    }


def connect_json(job: JobView, secret: str, url_pattern: str,
                 external_ips: Mapping[str, str]) -> dict[str, str]:
    """What the job's owner needs to open its application: the secret, and a URL where one is known.

    The URL needs a forwarded port (and a bundle with a connect-url); until then only the secret."""
    answer = {"secret": secret}
    if url_pattern and job.services:
        service = job.services[0]
        host = external_ips.get(service.gateway, service.gateway)
        answer["url"] = fill_connect_url(url_pattern, host=host, port=service.external_port,
                                         job_id=job.job_id, secret=secret)
    return answer
