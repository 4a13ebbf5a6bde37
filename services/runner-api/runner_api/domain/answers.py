"""Jobs as the original bwVisu API's JSON answers them. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bwvisu_common.app_links import fill_connect_url
from bwvisu_common.idle import last_activity
from bwvisu_common.job_facts import render
from bwvisu_common.read_model import JobView
from bwvisu_common.reasons import client_why


def job_json(job: JobView, external_ips: Mapping[str, str]) -> dict[str, Any]:
    """GET /jobs/<id> as the original middleware answered it, hyphenated names and all.

    `why` is ours: the typed reason behind `details` (a failed submission's made safe in both), and
    so is `last-activity` (ISO time), once the application answered: its forwards' last traffic, or
    when it first answered if none since (where idleness starts)."""
    why = client_why(job.failure, job.why)
    answer: dict[str, Any] = {
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
    last = last_activity(job)
    if last is not None:
        answer["last-activity"] = last.isoformat()
    return answer


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
