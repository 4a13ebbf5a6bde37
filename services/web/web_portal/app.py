"""The portal's HTTP edge: the FastAPI app, its pages, and the one place errors become pages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web_portal.errors import AmbiguousUser, NotFound, RunnerUnavailable
from web_portal.handlers import admin, apps, auth, connect, sessions
from web_portal.portal import Portal
from web_portal.security import Forbidden, LoginRequired
from web_portal.views import render

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "bwvisu_session"
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                 b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
def with_form_targets(headers: list[tuple[bytes, bytes]], origins: list[str]) -> list[tuple[bytes, bytes]]:
    """The headers with `origins` added to CSP's form-action: Connect's form is answered with a
    redirect to the application on a gateway, and form-action also governs that redirect."""
    extra = "".join(f" {o}" for o in origins).encode()
    return [(k, v.replace(b"form-action 'self'", b"form-action 'self'" + extra))
            if k == b"content-security-policy" else (k, v) for k, v in headers]


def gateway_origins(portal: Portal) -> list[str]:
    """Where Connect may lead: any port of a gateway's external address."""
    hosts = sorted({g.external_ip for g in portal.gateways if g.external_ip})
    return [f"{scheme}://{host}:*" for host in hosts for scheme in ("http", "https")]


class SecurityHeaders:
    """Adds the same safe headers to every answer (no framing, no foreign scripts)."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.app = app
        self.headers = SECURITY_HEADERS if headers is None else headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def create_app(portal: Portal, session_secret: str, secure_cookies: bool = False,
               session_max_age: int = 12 * 3600, ready: Callable[[], bool] = lambda: True) -> FastAPI:
    """The portal's app over the built `portal` (its feed and stores already connected); `ready`
    tells /healthz whether the process is sound."""
    app = FastAPI(title="bwvisu portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = portal
    app.add_middleware(SessionMiddleware, secret_key=session_secret, session_cookie=SESSION_COOKIE,
                       max_age=session_max_age, same_site="lax", https_only=secure_cookies)
    app.add_middleware(SecurityHeaders, headers=with_form_targets(SECURITY_HEADERS, gateway_origins(portal)))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (auth, apps, sessions, connect, admin):
        app.include_router(module.router)

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        ok = ready()
        return PlainTextResponse("ok" if ok else "unavailable", status_code=200 if ok else 503)

    _add_error_pages(app)
    return app


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        portal: Portal = request.app.state.portal
        if portal.header_auth is not None:
            return render(request, "error.html", 403, title="Not logged in",
                          message="Log in through your site's single sign-on to use the portal.")
        if request.method != "GET" or request.url.path.endswith("/events"):
            return PlainTextResponse("log in first", status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(AmbiguousUser)
    async def ambiguous_user(request: Request, exc: AmbiguousUser) -> Response:
        return render(request, "error.html", 400, title="Bad request", message=str(exc))

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return render(request, "error.html", 403, title="Not allowed", message=str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return render(request, "error.html", 404, title="Not found",
                      message="There is no such session or page.")

    @app.exception_handler(RunnerUnavailable)
    async def unavailable(request: Request, exc: RunnerUnavailable) -> Response:
        return render(request, "error.html", 503, title="The cluster does not answer",
                      message=f"{exc} Please try again in a minute.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Not allowed"}
        return render(request, "error.html", exc.status_code, title=titles.get(exc.status_code, "Error"),
                      message=str(exc.detail))
