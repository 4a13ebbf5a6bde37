"""The HTTP edge: the original bwVisu middleware API, basic auth, one place for status codes."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import msgspec
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from bwvisu_common.errors import DependencyUnavailable, InvalidInput
from bwvisu_common.job_facts import FailureKind, Why, WhyKind, render
from bwvisu_common.reasons import SERVICE_UNAVAILABLE, client_why
from bwvisu_common.validation import check_uid
from runner_api.domain.answers import connect_json, job_json
from runner_api.domain.requests import parse_client_address, parse_extension, parse_submission
from runner_api.errors import Conflict, NotAllowed, NotFound, SubmitFailed
from runner_api.handlers import Jobs
from runner_api.ports import ClusterFactsSource

log = logging.getLogger(__name__)

SUBMIT_FAILURE_STATUS = {
    FailureKind.REJECTED: 400, FailureKind.UNKNOWN_USER: 404, FailureKind.UNAVAILABLE: 503,
}


# auto_error off: a missing header must get our 401 answer, not FastAPI's.
basic = HTTPBasic(auto_error=False)


class Unauthorized(Exception):
    pass


def create_app(
    jobs: Jobs, external_ips: Mapping[str, str], user: str, password: str,
    ready: Callable[[], bool] = lambda: True,
    connect_urls: Callable[[str], str] = lambda template: "",
    cluster_facts: ClusterFactsSource | None = None,
) -> FastAPI:
    """The API over the built `jobs`; `ready` tells /healthz whether the process is sound.

    `connect_urls` gives a template's connect-url pattern (its app bundle's), "" for none."""
    # The docs are ours to serve, behind the same credential: they map the API for an attacker.
    app = FastAPI(title="bwvisu runner-api", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None,
                  description="The web frontend's job API (compatible with the bwVisu middleware API).")
    # A coroutine: FastAPI runs a plain function dependency in a worker thread, a hand-over to
    # another thread and back on every request for two comparisons.
    async def authorized(credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> None:
        # Compare both fields, always, in constant time: no early exit tells what was wrong.
        given = credentials or HTTPBasicCredentials(username="", password="")
        ok_user = secrets.compare_digest(given.username.encode(), user.encode())
        ok_password = secrets.compare_digest(given.password.encode(), password.encode())
        if not (ok_user and ok_password and password):
            raise Unauthorized()

    auth = [Depends(authorized)]

    @app.post("/jobs", dependencies=auth)
    async def submit_job(request: Request) -> dict[str, str]:
        submission = parse_submission(await _json_body(request))
        return {"job-id": await jobs.submit(submission)}

    @app.get("/jobs", dependencies=auth)
    async def list_jobs(uid: str | None = None) -> dict[str, list[str]]:
        return {"jobs": jobs.running(None if uid is None else check_uid(uid))}

    @app.get("/jobs/{job_id}", dependencies=auth)
    async def get_job(job_id: str, uid: str | None = None) -> dict[str, Any]:
        """The job. With `?uid=<its owner>` also `connect`: the session secret and the app's URL."""
        job = jobs.get_for(job_id, None if uid is None else check_uid(uid))
        answer = job_json(job, external_ips)
        secret = await jobs.session_secret(job) if uid is not None else ""
        if secret:
            answer["connect"] = connect_json(job, secret, connect_urls(job.template_name), external_ips)
        return answer

    @app.get("/jobs/{job_id}/log", dependencies=auth)
    async def job_log(job_id: str, lines: int = 100, uid: str | None = None) -> dict[str, str]:
        """The end of the job's output file, read on the cluster as the job's user."""
        return {"log": await jobs.log_tail(job_id, lines, None if uid is None else check_uid(uid))}

    @app.delete("/jobs/{job_id}", dependencies=auth)
    async def cancel_job(job_id: str, uid: str | None = None) -> dict[str, str]:
        await jobs.cancel(job_id, None if uid is None else check_uid(uid))
        return {"response": "job cancelled"}

    @app.post("/jobs/{job_id}/clients", dependencies=auth)
    async def allow_client(job_id: str, request: Request) -> dict[str, Any]:
        """The owner connects from this address: a restricted forward accepts it from now on."""
        client = parse_client_address(await _json_body(request))
        addresses = await jobs.allow_client(job_id, client.uid, client.address)
        return {"response": "address allowed", "client-addresses": addresses}

    @app.post("/jobs/{job_id}/extend", dependencies=auth)
    async def extend_job(job_id: str, request: Request) -> dict[str, Any]:
        """The owner's running job gets `minutes` more run time, within the site's maximum."""
        extension = parse_extension(await _json_body(request))
        job = await jobs.extend(job_id, extension.uid, extension.minutes)
        return {"response": "time added", "minutes": extension.minutes,
                "extended-minutes": job.extended_minutes, "time-limit": job.time_limit}

    @app.get("/cluster/check-user/{user_name}", dependencies=auth)
    async def check_user(user_name: str) -> dict[str, str]:
        await jobs.check_user(check_uid(user_name))
        return {"response": "success"}

    if cluster_facts is not None:
        _add_app_needs(app, auth, cluster_facts)
    _add_docs(app, auth)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = ready()
        return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)

    _add_error_handlers(app)
    return app


def _add_app_needs(app: FastAPI, auth: list[Any], source: ClusterFactsSource) -> None:
    @app.get("/apps/requirements", dependencies=auth)
    async def app_requirements() -> Response:
        """What the cluster has of what the app bundles' `needs` name, as scheduler-adapter last saw it.

        `partitions` (with their gres) and `commands` are null where they could not be checked
        (`slurm-error`, `commands-error` say why): not checked is never "absent"."""
        return Response(_encode_facts(await source.facts()), media_type="application/json")


_encode_facts = msgspec.json.Encoder().encode


def _add_docs(app: FastAPI, auth: list[Any]) -> None:
    """OpenAPI at /openapi.json, /docs and /redoc, for the API's own client only."""

    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=auth, include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", dependencies=auth, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


async def _json_body(request: Request) -> object:
    try:
        return await request.json()
    except ValueError as exc:
        raise InvalidInput("body", "is not valid JSON") from exc


def _answer(status: int, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"response": message, **extra}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        response = _answer(401, "authentication required")
        response.headers["WWW-Authenticate"] = 'Basic realm="bwvisu"'
        return response

    @app.exception_handler(InvalidInput)
    async def invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return _answer(400, str(exc), field=exc.field)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _answer(404, str(exc))

    @app.exception_handler(NotAllowed)
    async def not_allowed(_: Request, exc: NotAllowed) -> JSONResponse:
        return _answer(403, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _answer(409, str(exc))

    @app.exception_handler(SubmitFailed)
    async def submit_failed(_: Request, exc: SubmitFailed) -> JSONResponse:
        # The full reason (hosts, sbatch's words) stays in the job's history and this log.
        log.info("submission failed (%s): %s", exc.kind, exc)
        said = client_why(exc.kind, Why(WhyKind.SUBMIT_FAILED, str(exc)))
        return _answer(SUBMIT_FAILURE_STATUS.get(exc.kind, 400), render(said))

    @app.exception_handler(DependencyUnavailable)
    async def unavailable(request: Request, exc: DependencyUnavailable) -> JSONResponse:
        log.warning("answering 503 on %s %s: %s", request.method, request.url.path, exc)
        return _answer(503, SERVICE_UNAVAILABLE)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _answer(500, "internal error; the runner-api log has the details")
