"""Who is asking, and whether a state-changing form really comes from our own page.

The session is a signed cookie (HttpOnly, SameSite=Lax, Secure over HTTPS) holding the user,
a login id and the CSRF token. Logging out revokes the login id, so a copied cookie dies too.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData

from web_portal.errors import WebError


class LoginRequired(WebError):
    """No logged-in user; pages redirect to the login form."""


class Forbidden(WebError):
    """Logged in, but not allowed (a form without its CSRF token, a non-admin on /admin)."""


class Revocations:
    """Login ids that logged out, kept until their cookies expire anyway."""

    def __init__(self, max_age: float) -> None:
        self._max_age = max_age
        self._until: dict[str, float] = {}

    def revoke(self, sid: str) -> None:
        now = time.monotonic()
        self._until = {s: t for s, t in self._until.items() if t > now}
        self._until[sid] = now + self._max_age

    def revoked(self, sid: str) -> bool:
        return self._until.get(sid, 0.0) > time.monotonic()


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token, made on first use."""
    session: dict[str, Any] = request.session
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def start_login(request: Request, user: str) -> None:
    """A fresh session for `user`: new login id and new CSRF token (no session fixation)."""
    request.session.clear()
    request.session.update(user=user, sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(32))


def end_login(request: Request) -> None:
    sid = request.session.get("sid")
    if sid:
        request.app.state.portal.revocations.revoke(str(sid))
    request.session.clear()


def current_user(request: Request) -> str:
    """The logged-in user (dependency); LoginRequired otherwise."""
    portal = request.app.state.portal
    if portal.header_auth is not None:
        client = request.client.host if request.client else None
        user = portal.header_auth.user(client, dict(request.headers))
        if user is None:
            raise LoginRequired("the single sign-on proxy did not name a user")
        if request.session.get("user") != user:
            start_login(request, user)
        return user
    user = request.session.get("user")
    sid = request.session.get("sid")
    if not user or not sid or portal.revocations.revoked(str(sid)):
        raise LoginRequired("not logged in")
    return str(user)


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token matches the session's (dependency); Forbidden otherwise."""
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, str(expected)):
        raise Forbidden("This form is out of date or did not come from the portal. "
                        "Reload the page and try again.")
    return form
