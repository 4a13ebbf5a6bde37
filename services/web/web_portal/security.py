"""Who is asking, and whether a state-changing form really comes from our own page.

The session is a signed cookie (HttpOnly, SameSite=Lax, Secure over HTTPS) holding the user,
a login id, when the login was made, and the CSRF token. A login lives at most
`web.session-max-age` from when it was made (the cookie is re-signed on every answer, so its own
age would slide), and logging out revokes the login id for every replica: a copied cookie dies too.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData

from web_portal.domain.client_address import client_address
from web_portal.errors import WebError


class LoginRequired(WebError):
    """No logged-in user; pages redirect to the login form."""


class Forbidden(WebError):
    """Logged in, but not allowed (a form without its CSRF token, a non-admin on /admin)."""


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token, made on first use."""
    session: dict[str, Any] = request.session
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def source_address(request: Request) -> str:
    """The client's address: the peer, or the right-most untrusted X-Forwarded-For hop behind
    one of `web.trusted-proxies`."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"),
                          request.app.state.portal.trusted_networks)


def start_login(request: Request, user: str) -> None:
    """A fresh session for `user`: new login id and new CSRF token (no session fixation)."""
    sid = secrets.token_urlsafe(16)
    request.session.clear()
    request.session.update(user=user, sid=sid, at=int(time.time()), csrf=secrets.token_urlsafe(32))
    request.app.state.portal.revocations.fresh(sid)


async def end_login(request: Request) -> None:
    """Revoke this login everywhere until its cookie could not be valid anyway, and forget it."""
    portal = request.app.state.portal
    sid, at = request.session.get("sid"), request.session.get("at")
    if sid and isinstance(at, int):
        await portal.revocations.revoke(str(sid), at + portal.session_max_age - time.time())
    request.session.clear()


async def current_user(request: Request) -> str:
    """The logged-in user (dependency); LoginRequired otherwise."""
    portal = request.app.state.portal
    if portal.header_auth is not None:
        client = request.client.host if request.client else None
        user = portal.header_auth.user(client, request.headers)
        if user is None:
            raise LoginRequired("the single sign-on proxy did not name a user")
        if request.session.get("user") != user:
            start_login(request, user)
        return str(user)
    user, sid, at = (request.session.get(k) for k in ("user", "sid", "at"))
    if not user:
        raise LoginRequired("not logged in")
    if not sid or not isinstance(at, int) or time.time() - at > portal.session_max_age:
        request.session.clear()
        raise LoginRequired("this login has expired")
    if await portal.revocations.revoked(str(sid)):
        # Cleared, so the answer deletes the cookie instead of signing it afresh.
        request.session.clear()
        raise LoginRequired("this login was ended")
    return str(user)


async def while_logged_in(request: Request, stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """A long answer (a live stream) that ends once its login is revoked or too old.

    The login was checked when the stream began; without this, a copied cookie's stream would
    go on telling the owner's sessions after the logout."""
    portal = request.app.state.portal
    sid, at = request.session.get("sid"), request.session.get("at")
    try:
        async for part in stream:
            if portal.header_auth is None and (
                    not isinstance(at, int) or time.time() - at > portal.session_max_age
                    or await portal.revocations.revoked(str(sid))):
                return
            yield part
    finally:
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token matches the session's (dependency); Forbidden otherwise."""
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, str(expected)):
        raise Forbidden("This form is out of date or did not come from the portal. "
                        "Reload the page and try again.")
    return form
