"""Where a session's application is opened: the `connect-url` of its app bundle, filled in.

A bundle (`templates/<name>.app.json`) says how its application is reached, e.g.
`http://{host}:{port}/index.html?autoconnect=true&password={secret}`. runner-api fills it
for the job's owner (it alone may see the secret); the portal checks bundles with the same
placeholders.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from urllib.parse import quote

BUNDLE_SUFFIX = ".app.json"
URL_PLACEHOLDERS = frozenset({"host", "port", "job_id", "secret"})


def placeholders(pattern: str) -> set[str]:
    """The names in `{...}` of a connect-url; ValueError for a malformed one."""
    return {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}


def fill_connect_url(pattern: str, *, host: str, port: int, job_id: str, secret: str) -> str:
    """The URL to open; the secret is URL-quoted (it is hex today, but a site may change that)."""
    return pattern.format(host=host, port=port, job_id=job_id, secret=quote(secret, safe=""))


def bundle_connect_url(templates_dir: Path, template_name: str) -> str:
    """The `connect-url` of `<templates_dir>/<template_name>.app.json`; "" if it has none.

    A missing or unreadable bundle is "" too: a job still shows its secret, only no URL.
    The name was validated before (no '/', '..'); refused here as well.
    """
    if not template_name or any(c in template_name for c in "/\\\0") or template_name.startswith("."):
        return ""
    try:
        data = json.loads((templates_dir / f"{template_name}{BUNDLE_SUFFIX}").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    url = data.get("connect-url", "") if isinstance(data, dict) else ""
    if not isinstance(url, str):
        return ""
    try:
        return url if placeholders(url) <= URL_PLACEHOLDERS else ""
    except ValueError:
        return ""
