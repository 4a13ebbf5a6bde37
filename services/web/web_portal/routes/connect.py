"""Connect: record the owner's client address for the job's forwards, then open the application."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from web_portal.domain.client_address import client_address
from web_portal.errors import NotFound, Rejected, RunnerUnavailable
from web_portal.portal import Portal
from web_portal.security import checked_form, current_user
from web_portal.views import render

log = logging.getLogger(__name__)
router = APIRouter()

User = Annotated[str, Depends(current_user)]


@router.post("/sessions/{job_id}/connect")
async def connect(request: Request, job_id: str, user: User,
                  form: Annotated[FormData, Depends(checked_form)]) -> Response:
    portal: Portal = request.app.state.portal
    job = portal.own_job(job_id, user)
    if job is None:
        raise NotFound(job_id)
    url = portal.card(job).connect_url
    if not url:
        return RedirectResponse(f"/sessions#s-{job_id}", status_code=303)  # not ready (any more)
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.getlist("x-forwarded-for"), portal.trusted_proxies)
    problem = await _record(portal, job_id, user, address)
    if problem and portal.restrict_forwards:
        # The gateway would not let this browser in: say why rather than open a dead page.
        return render(request, "error.html", 409, title="Cannot connect from here", message=problem)
    return RedirectResponse(url, status_code=303)


async def _record(portal: Portal, job_id: str, user: str, address: str | None) -> str:
    """Tell runner-api where the owner connects from; what went wrong, in words, or ""."""
    if address is None:
        log.warning("job %s: cannot tell %s's client address (proxy or X-Forwarded-For)", job_id, user)
        return "The portal cannot tell the address you connect from."
    try:
        await portal.runner.allow_client(job_id, user, address)
        return ""
    except Rejected:
        log.info("job %s: %s connects from %s, which a gateway cannot match", job_id, user, address)
        return (f"Your address {address} cannot be let through the gateway (only IPv4 addresses can). "
                "Connect from an IPv4 network.")
    except NotFound:
        return "The session has ended."
    except RunnerUnavailable as exc:
        log.warning("job %s: cannot record %s's client address: %s", job_id, user, exc)
        return f"{exc} Please try again in a minute."
