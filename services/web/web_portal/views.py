"""Pages: jinja2 templates in pages/, rendered with what every page needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from web_portal.security import csrf_token

HERE = Path(__file__).parent

pages = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "pages"), autoescape=True,
                           undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(request: Request, page: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page with what every page needs: the user, the CSRF token, whether they are admin."""
    portal = request.app.state.portal
    user = request.session.get("user") if "session" in request.scope else None
    base = {"user": user, "csrf": csrf_token(request), "is_admin": bool(user) and portal.is_admin(str(user)),
            "sso": portal.header_auth is not None, "path": request.url.path}
    return HTMLResponse(pages.get_template(page).render(**base, **context), status_code=status)


def render_fragment(page: str, **context: Any) -> str:
    return pages.get_template(page).render(**context)


