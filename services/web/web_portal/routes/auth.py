"""Log in (PAM), log out."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from bwvisu_common.errors import InvalidInput
from bwvisu_common.validation import check_uid
from web_portal.portal import Portal
from web_portal.security import LoginRequired, checked_form, current_user, end_login, start_login
from web_portal.views import render

log = logging.getLogger(__name__)
router = APIRouter()

# Consecutive failures per user name: each one doubles the delay, up to this factor.
MAX_BACKOFF = 8
_failures: dict[str, int] = {}


def safe_next(target: str) -> str:
    """Only our own paths: `next` must not send a fresh login to another site."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@router.get("/")
async def home(request: Request) -> Response:
    try:
        current_user(request)
    except LoginRequired:
        if request.app.state.portal.header_auth is None:
            return RedirectResponse("/login", status_code=303)
        raise
    return RedirectResponse("/apps", status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str = "/apps") -> Response:
    return render(request, "login.html", next=safe_next(next), error="", username="")


@router.post("/login")
async def login(request: Request, form: Annotated[FormData, Depends(checked_form)]) -> Response:
    portal: Portal = request.app.state.portal
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/apps")))
    if portal.authenticator is None:
        return RedirectResponse("/", status_code=303)
    if await _check(portal, username, password):
        _failures.pop(username, None)
        start_login(request, username)
        log.info("%s logged in", username)
        return RedirectResponse(target, status_code=303)
    count = _failures.get(username, 0)
    if len(_failures) > 10_000:
        _failures.clear()
    _failures[username] = count + 1
    # Every failure costs time, more so for repeated guesses at one name; the event loop runs on.
    await asyncio.sleep(portal.login_delay * min(2**count, MAX_BACKOFF))
    return render(request, "login.html", 401, next=target, username=username,
                  error="Wrong user name or password.")


async def _check(portal: Portal, username: str, password: str) -> bool:
    try:
        check_uid(username)
    except InvalidInput:
        return False
    if not password or portal.authenticator is None:
        return False
    return await portal.authenticator.authenticate(username, password)


@router.post("/logout")
async def logout(request: Request, form: Annotated[FormData, Depends(checked_form)]) -> Response:
    end_login(request)
    return RedirectResponse("/login", status_code=303)
