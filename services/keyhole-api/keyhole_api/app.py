"""The HTTP edge of keyhole-api: one POST, and the one place errors become status codes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.keyhole_client import PATH_TEMPLATE, SIGNATURE_HEADER, TIMESTAMP_HEADER
from keyhole_api.errors import GrantPending, NoCapacity, Refusal, Refused
from keyhole_api.handlers import KeyholeHandlers
from keyhole_api.ports import GatewayLiveness

log = logging.getLogger(__name__)

GRANTS = Counter("bwvisu_keyhole_grants_total", "Port requests answered with forwarded ports (a retry too)")
REFUSALS = Counter("bwvisu_keyhole_refusals_total", "Port requests turned down, by reason", ["reason"])

STATUS = {
    Refusal.UNKNOWN_JOB: 404,
    Refusal.NOT_AUTHENTIC: 401,
    Refusal.TOO_LARGE: 413,
    Refusal.INVALID: 400,
    Refusal.FOREIGN_NODES: 403,
    Refusal.NOT_RUNNING: 409,
    Refusal.ALREADY_GRANTED: 409,
    Refusal.REPLAYED: 409,
}


def status_of(refused: Refused) -> int:
    """The HTTP status a refusal is answered with."""
    return STATUS[refused.why]


async def capped_body(request: Request, limit: int) -> bytes:
    """The body, read only up to `limit` bytes: a longer one is refused before it is all read.

    Content-Length is checked first; a chunked body (no length) is counted as it arrives.
    """
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isascii() or not declared.isdigit() or int(declared) > limit):
        raise Refused(Refusal.TOO_LARGE, f"request body larger than {limit} bytes", kind="body-too-large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(Refusal.TOO_LARGE, f"request body larger than {limit} bytes",
                          kind="body-too-large")
    return bytes(body)


def create_app(handlers: KeyholeHandlers, gateways: GatewayLiveness, *, max_body: int = 4096,
               ready: Callable[[], bool] = lambda: True) -> FastAPI:
    app = FastAPI(title="bwvisu keyhole-api", description="Forwarded ports for running jobs.")

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        REFUSALS.labels(reason=exc.why.value).inc()
        return JSONResponse({"detail": exc.reason}, status_code=status_of(exc))

    @app.exception_handler(NoCapacity)
    async def no_capacity(_: Request, exc: NoCapacity) -> JSONResponse:
        REFUSALS.labels(reason="no-capacity").inc()
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(GrantPending)
    async def pending(_: Request, exc: GrantPending) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(DependencyUnavailable)
    async def unavailable(_: Request, exc: DependencyUnavailable) -> JSONResponse:
        log.warning("answering 503: %s", exc)
        return JSONResponse({"detail": "keyhole is temporarily unavailable"}, status_code=503)

    @app.post(PATH_TEMPLATE)
    async def request_ports(job_id: str, request: Request) -> dict[str, object]:
        """Forward ports to a running job; the request is signed with the job's token."""
        try:
            body = await capped_body(request, max_body)
        except Refused as refusal:
            handlers.refuse_unauthenticated(refusal.kind, job_id, refusal.reason)
            raise
        granted = await handlers.request_ports(
            job_id, request.url.path, request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER), body)
        GRANTS.inc()
        return granted

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = ready()  # not stopping, and every task of the process still runs
        return JSONResponse({"status": "ok" if ok else "unavailable", "gateways-alive": gateways.alive(),
                             "refused-unauthenticated": dict(handlers.unauthenticated)},
                            status_code=200 if ok else 503)

    return app
