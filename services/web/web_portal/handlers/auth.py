"""Log in (PAM), log out."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import Counter
from starlette.datastructures import FormData

from bwvisu_common.errors import InvalidInput
from bwvisu_common.validation import check_uid
from web_portal.domain.login_limits import Refused
from web_portal.portal import Portal
from web_portal.security import (
    LoginRequired,
    checked_form,
    current_user,
    end_login,
    source_address,
    start_login,
)
from web_portal.views import render

log = logging.getLogger(__name__)
router = APIRouter()

LOGINS = Counter("bwvisu_portal_logins_total", "Password logins to the portal by outcome: succeeded, "
                 "failed, refused (too many failures)", ["outcome"])


def safe_next(target: str) -> str:
    """Only our own paths: `next` must not send a fresh login to another site."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@router.get("/")
async def home(request: Request) -> Response:
    try:
        await current_user(request)
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
    address, started = source_address(request), time.monotonic()
    refused = portal.login_limits.begin(address, started)
    if refused is not None:
        LOGINS.labels(outcome="refused").inc()
        return _too_many(request, refused, address, username, target)
    if await _check(portal, username, password):
        portal.login_limits.succeeded(address, started)
        LOGINS.labels(outcome="succeeded").inc()
        start_login(request, username)
        log.info("%s logged in from %s", username, address)
        return RedirectResponse(target, status_code=303)
    log.info("failed login from %s", address)  # not the name: people type passwords into it
    LOGINS.labels(outcome="failed").inc()
    _log_limit_reached(portal, address)
    # Every failure also costs time; the event loop runs on.
    await asyncio.sleep(portal.login_delay)
    return render(request, "login.html", 401, next=target, username=username,
                  error="Wrong user name or password.")


def _log_limit_reached(portal: Portal, address: str) -> None:
    # Once when a limit is reached, not per refused attempt: a flood must not flood the log too.
    limits = portal.login_limits
    if limits.failures(address) == limits.per_address:
        log.warning("%d failed logins from %s within %g s: refusing it for now", limits.per_address,
                    address, limits.window)
    if limits.total_failures == limits.total:
        log.warning("%d failed logins from all addresses within %g s: refusing every login for now",
                    limits.total, limits.window)


def _too_many(request: Request, refused: Refused, address: str, username: str, target: str) -> Response:
    whence = "from your address" if refused.scope == "address" else "on this portal"
    log.debug("login from %s refused (%s limit), retry after %d s", address, refused.scope,
              refused.retry_after)
    response = render(request, "login.html", 429, next=target, username=username,
                      error=f"Too many failed logins {whence}. "
                            f"Try again in {_duration(refused.retry_after)}.")
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


def _duration(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{(seconds + 59) // 60} minutes"


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
    await end_login(request)
    return RedirectResponse("/login", status_code=303)
