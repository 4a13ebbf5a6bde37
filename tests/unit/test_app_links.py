"""The app bundle's connect-url as runner-api fills it for a job's owner."""

from __future__ import annotations

import json
from pathlib import Path

from bwvisu_common.app_links import bundle_connect_url, fill_connect_url
from bwvisu_common.templates import DEFAULT_DIR


def test_the_shipped_bundles_carry_the_secret_where_their_application_wants_it() -> None:
    assert bundle_connect_url(DEFAULT_DIR, "xpra-desktop").endswith("&password={secret}")
    assert bundle_connect_url(DEFAULT_DIR, "jupyter-notebook").endswith("/tree?token={secret}")
    assert bundle_connect_url(DEFAULT_DIR, "port-echo") == "", "no bundle, no URL"


def test_a_filled_url_quotes_the_secret() -> None:
    url = fill_connect_url("http://{host}:{port}/?token={secret}&j={job_id}", host="gw", port=2,
                           job_id="j1", secret="a&b=c/d")
    assert url == "http://gw:2/?token=a%26b%3Dc%2Fd&j=j1"


def test_odd_bundles_and_names_give_no_url(tmp_path: Path) -> None:
    (tmp_path / "odd.app.json").write_text(json.dumps({"connect-url": "http://{host}/{user}"}))
    (tmp_path / "broken.app.json").write_text("{not json")
    (tmp_path / "list.app.json").write_text("[1]")
    for name in ("odd", "broken", "list", "missing", "../xpra-desktop", ".hidden", ""):
        assert bundle_connect_url(tmp_path, name) == "", name
