"""runner-api's OpenAPI description and docs pages are for its own client; /healthz stays open."""

from __future__ import annotations

import base64

import httpx
import pytest

from runner_api.app import create_app

PASSWORD = "s3cret-web"
DOCS = ["/docs", "/redoc", "/openapi.json"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class NoJobs:
    """The docs never touch the job handlers."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the docs must not need the job handlers ({name})")


@pytest.fixture
async def client():
    app = create_app(NoJobs(), {}, "bwvisu-web", PASSWORD)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c


@pytest.mark.parametrize("auth", [{}, basic("bwvisu-web", "wrong"), basic("root", PASSWORD)])
async def test_the_docs_need_the_credential(client, auth):
    for url in DOCS:
        r = await client.get(url, headers=auth)
        assert r.status_code == 401, url
        assert r.headers["www-authenticate"].startswith("Basic"), url
        assert "paths" not in r.text and "swagger" not in r.text.lower(), url


async def test_with_the_credential_the_docs_describe_the_api(client):
    auth = basic("bwvisu-web", PASSWORD)
    spec = (await client.get("/openapi.json", headers=auth)).json()
    assert {"/jobs", "/jobs/{job_id}", "/cluster/check-user/{user_name}"} <= set(spec["paths"])
    assert not {"/docs", "/redoc", "/openapi.json"} & set(spec["paths"]), "the doc pages are not API"
    docs = await client.get("/docs", headers=auth)
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text
    redoc = await client.get("/redoc", headers=auth)
    assert redoc.status_code == 200 and "redoc" in redoc.text and "/openapi.json" in redoc.text


async def test_healthz_stays_open(client):
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_healthz_says_unavailable_once_the_process_is_not_sound():
    sound = [True]
    app = create_app(NoJobs(), {}, "bwvisu-web", PASSWORD, ready=lambda: sound[0])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        assert (await c.get("/healthz")).status_code == 200
        sound[0] = False  # stopping, or a task it needs died
        r = await c.get("/healthz")
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}
