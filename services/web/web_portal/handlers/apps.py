"""The applications a user can start, and the launch form generated from each bundle."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from bwvisu_common.needs import Verdict
from web_portal.domain.bundles import Bundle
from web_portal.domain.forms import initial_values, validate_form
from web_portal.errors import NotFound, Rejected, RunnerUnavailable
from web_portal.portal import Portal
from web_portal.security import checked_form, current_user
from web_portal.views import render

log = logging.getLogger(__name__)
router = APIRouter()

User = Annotated[str, Depends(current_user)]


def _bundle(request: Request, name: str) -> Bundle:
    bundle = request.app.state.portal.bundles.get(name)
    if bundle is None:
        raise NotFound(f"no application {name!r}")
    return bundle


@router.get("/apps")
async def app_list(request: Request, user: User) -> Response:
    portal: Portal = request.app.state.portal
    bundles = sorted(portal.bundles.values(), key=lambda b: b.title.lower())
    return render(request, "apps.html", bundles=bundles, verdicts=await portal.app_needs.verdicts(bundles))


@router.get("/apps/{name}")
async def launch_form(request: Request, name: str, user: User,
                      from_job: Annotated[str, Query(alias="from", max_length=64)] = "") -> Response:
    """The form, filled from the user's own session `from` (Launch again), else from their most recent
    session of this app, else with the bundle's defaults."""
    portal: Portal = request.app.state.portal
    bundle = _bundle(request, name)
    if from_job:
        earlier = portal.own_job(from_job, user)
        if earlier is None or earlier.template_name != bundle.template:
            raise NotFound(f"no session {from_job!r} of this application")
    else:
        earlier = portal.last_job_of(user, bundle)
    note = ""
    if earlier is not None and earlier.submitted_at is not None:
        note = f"Filled in with the values of your session of {earlier.submitted_at:%Y-%m-%d %H:%M} UTC."
    verdict = await portal.app_needs.verdict(bundle)
    return render(request, "launch.html", bundle=bundle, errors={}, problem=_cannot_run(verdict), note=note,
                  values=initial_values(bundle, earlier.variables if earlier else None), verdict=verdict)


@router.post("/apps/{name}")
async def launch(request: Request, name: str, user: User,
                 form: Annotated[FormData, Depends(checked_form)]) -> Response:
    portal: Portal = request.app.state.portal
    bundle = _bundle(request, name)
    verdict = await portal.app_needs.verdict(bundle)
    if not verdict.offered:  # the page offers no Start; a hand-made request gets the same answer
        log.info("%s: %s refused: %s", user, bundle.name, verdict.reason)
        return render(request, "launch.html", 409, bundle=bundle, values=initial_values(bundle), errors={},
                      problem=_cannot_run(verdict), verdict=verdict)
    result = validate_form(bundle, {k: v for k, v in form.items() if isinstance(v, str)})
    if not result.ok:
        return render(request, "launch.html", 400, bundle=bundle, values=result.values,
                      errors=result.errors, problem="Please correct the marked fields.")
    try:
        job_id = await portal.runner.submit(user, bundle.template, result.variables)
    except Rejected as exc:
        field = exc.field.removeprefix("variables.")
        errors = {field: str(exc)} if bundle.field(field) else {}
        return render(request, "launch.html", 400, bundle=bundle, values=result.values, errors=errors,
                      problem=f"The cluster refused to start it: {exc}")
    except RunnerUnavailable as exc:
        return render(request, "launch.html", 503, bundle=bundle, values=result.values, errors={},
                      problem=f"The cluster cannot start it right now: {exc}. Please try again later.")
    log.info("%s started %s as job %s", user, bundle.name, job_id)
    return RedirectResponse(f"/sessions#s-{job_id}", status_code=303)


def _cannot_run(verdict: Verdict) -> str:
    return "" if verdict.offered else f"This application cannot run on this cluster: it {verdict.reason}."
