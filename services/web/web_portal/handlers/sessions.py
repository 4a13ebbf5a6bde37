"""My sessions: the cards, their live updates (server-sent events), cancel and the log."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import FormData

from web_portal.errors import NotFound, Rejected, RunnerUnavailable
from web_portal.portal import Portal
from web_portal.security import checked_form, csrf_token, current_user, while_logged_in
from web_portal.views import render, render_fragment

log = logging.getLogger(__name__)
router = APIRouter()

User = Annotated[str, Depends(current_user)]
LOG_LINES = 40
# A comment line this often keeps proxies from closing a quiet stream, and ages sessions out.
KEEPALIVE_SECONDS = 15.0


@router.get("/sessions")
async def session_list(request: Request, user: User) -> Response:
    portal: Portal = request.app.state.portal
    return render(request, "sessions.html", cards=portal.cards(user))


@router.get("/sessions/events")
async def session_events(request: Request, user: User) -> StreamingResponse:
    portal: Portal = request.app.state.portal
    stream = while_logged_in(request, live_cards(portal, user, csrf_token(request)))
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def live_cards(portal: Portal, user: str, csrf: str,
                     keepalive: float = KEEPALIVE_SECONDS) -> AsyncIterator[str]:
    """`sessions` events with the user's cards whenever they change; runs until the client leaves."""
    yield "retry: 2000\n\n"
    last = ""
    while True:
        seq = portal.feed.seq
        payload = cards_payload(portal, user, csrf)
        yield f"event: sessions\ndata: {payload}\n\n" if payload != last else ": still here\n\n"
        last = payload
        await portal.feed.changed(seq, keepalive)


def cards_payload(portal: Portal, user: str, csrf: str) -> str:
    cards = [{"id": c.job_id, "state": c.state,
              "html": render_fragment("_card.html", card=c, csrf=csrf)} for c in portal.cards(user)]
    return json.dumps({"cards": cards}, separators=(",", ":"))


@router.get("/sessions/{job_id}")
async def session_page(request: Request, job_id: str, user: User) -> Response:
    portal: Portal = request.app.state.portal
    job = portal.own_job(job_id, user)
    if job is None:
        raise NotFound(job_id)
    log_text, log_problem = await _log(portal, job_id, user)
    return render(request, "session.html", card=portal.card(job), log_text=log_text, log_problem=log_problem)


@router.get("/sessions/{job_id}/log")
async def session_log(request: Request, job_id: str, user: User) -> PlainTextResponse:
    portal: Portal = request.app.state.portal
    if portal.own_job(job_id, user) is None:
        raise NotFound(job_id)
    text, problem = await _log(portal, job_id, user)
    return PlainTextResponse(problem or text or "(the log is empty so far)",
                             status_code=503 if problem else 200, headers={"Cache-Control": "no-store"})


async def _log(portal: Portal, job_id: str, user: str) -> tuple[str, str]:
    try:
        return await portal.runner.log_tail(job_id, user, LOG_LINES), ""
    except RunnerUnavailable as exc:
        return "", f"The log cannot be read right now: {exc}"
    except NotFound:
        return "", "The log is not there (yet)."


@router.post("/sessions/{job_id}/cancel")
async def cancel(request: Request, job_id: str, user: User,
                 form: Annotated[FormData, Depends(checked_form)]) -> Response:
    portal: Portal = request.app.state.portal
    if portal.own_job(job_id, user) is None:
        raise NotFound(job_id)
    try:
        await portal.runner.cancel(job_id, user)
        log.info("%s cancelled job %s", user, job_id)
    except NotFound:
        log.info("%s cancelled job %s, which had ended meanwhile", user, job_id)
    return RedirectResponse(f"/sessions#s-{job_id}", status_code=303)



@router.post("/sessions/{job_id}/extend")
async def extend(request: Request, job_id: str, user: User,
                 form: Annotated[FormData, Depends(checked_form)]) -> Response:
    """More run time for the user's own running session; the sessions page says why if refused."""
    portal: Portal = request.app.state.portal
    if portal.own_job(job_id, user) is None:
        raise NotFound(job_id)
    raw = form.get("minutes")
    minutes = int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 7 else 0
    problem = ""
    if minutes <= 0:
        problem = "Choose how many minutes to add."
    else:
        try:
            await portal.runner.extend(job_id, user, minutes)
            log.info("%s extended job %s by %d minutes", user, job_id, minutes)
        except Rejected as exc:
            problem = f"The session was not extended: {exc}."
        except NotFound:
            problem = "The session was not extended: it is not running any more."
    if problem:
        return render(request, "sessions.html", 409, cards=portal.cards(user), problem=problem)
    return RedirectResponse(f"/sessions#s-{job_id}", status_code=303)
