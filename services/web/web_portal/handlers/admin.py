"""The admin pages: the sessions (filtered, a page at a time), one job's history, the gateways and
their forwards, the command nodes. Only members of `web.admin-group` see them."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bwvisu_common.errors import DependencyUnavailable, InvalidInput
from bwvisu_common.job_facts import JobState
from bwvisu_common.job_history import history, is_job_id, outcome
from bwvisu_common.job_lists import STATES, page_of
from web_portal.domain.admin_list import ADMIN_PAGE_SIZE, history_url, page_url, parse_query
from web_portal.errors import NotFound
from web_portal.portal import Portal
from web_portal.security import Forbidden, current_user
from web_portal.views import render

router = APIRouter()

User = Annotated[str, Depends(current_user)]
PROBE_TIMEOUT = 1.0


class GatewayRow(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    internal_ip: str
    external_ip: str
    jobs: int
    forwards: int
    open_forwards: int
    agent: str


class CommandNodeRow(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    address: str
    status: str


def gateway_rows(portal: Portal) -> list[GatewayRow]:
    """Forwards per gateway, from the live read model (jobs not finished)."""
    active = [j for j in portal.feed.all() if j.state != JobState.FINISHED]
    rows = []
    for g in portal.gateways:
        services = [s for j in active for s in j.services if s.gateway == g.label]
        rows.append(GatewayRow(
            name=g.label, internal_ip=g.internal_ip, external_ip=g.external_ip,
            jobs=len({j.job_id for j in active if any(s.gateway == g.label for s in j.services)}),
            forwards=len(services), open_forwards=sum(s.open for s in services),
            agent=agent_status(portal, g.label),
        ))
    return rows


def agent_status(portal: Portal, gateway: str) -> str:
    if portal.beats is None:
        return "unknown"
    seen = portal.beats.last(gateway)
    if seen is None:
        return "never heard from"
    age, forwards = seen
    if age > portal.beats.timeout:
        return f"silent for {age:.0f} s"
    return f"alive ({forwards} rules)"


async def command_node_rows(portal: Portal) -> list[CommandNodeRow]:
    """Whether each command node's sshd accepts a connection from here, asked in parallel."""
    nodes = portal.command_nodes
    answers = await asyncio.gather(*(portal.prober.is_open(n.ip, n.port, PROBE_TIMEOUT) for n in nodes))
    return [CommandNodeRow(name=n.label, address=f"{n.ip}:{n.port}",
                           status="up (sshd answers)" if ok else "down (no answer)")
            for n, ok in zip(nodes, answers, strict=True)]


def admin_only(request: Request, user: str) -> Portal:
    """The portal, for a member of the admin group; Forbidden for anyone else (asked first)."""
    portal: Portal = request.app.state.portal
    if not portal.is_admin(user):
        raise Forbidden(f"The admin pages are for members of the group {portal.admin_group!r}.")
    return portal


@router.get("/admin")
async def admin_page(request: Request, user: User, page: str = "", state: str = "",
                     gateway: str = "", sort: str = "") -> Response:
    portal = admin_only(request, user)
    # `user` names the logged-in admin; the filter's user is its own query parameter.
    try:
        query = parse_query(request.query_params.get("user", ""), state, gateway, page, sort)
    except InvalidInput as exc:
        return render(request, "error.html", 400, title="Bad request", message=str(exc))
    shown = page_of(portal.feed.all(), query.wanted, query.page, ADMIN_PAGE_SIZE, query.order)
    rows = [(portal.card(j), j, history_url(j.job_id)) for j in shown.jobs]
    order = query.order
    links = {"previous": page_url(query.wanted, shown.number - 1, order) if shown.has_previous else "",
             "next": page_url(query.wanted, shown.number + 1, order) if shown.has_next else "",
             "newest": page_url(query.wanted, 1), "idle": page_url(query.wanted, 1, "idle")}
    return render(request, "admin.html", rows=rows, shown=shown, wanted=query.wanted, links=links,
                  states=STATES, gateway_names=[g.label for g in portal.gateways],
                  gateways=gateway_rows(portal), command_nodes=await command_node_rows(portal),
                  restricted=portal.restrict_forwards, by_idle=order == "idle")


@router.get("/admin/jobs/{job_id}")
async def job_history_page(request: Request, user: User, job_id: str) -> Response:
    portal = admin_only(request, user)
    if portal.history is None or not is_job_id(job_id):
        raise NotFound(job_id)
    try:
        found = history(await portal.history.read_job(job_id))
    except DependencyUnavailable as exc:
        return render(request, "error.html", 503, title="The event log does not answer",
                      message=f"{exc} Please try again in a minute.")
    if found is None:
        raise NotFound(job_id)
    return render(request, "job_history.html", job=found.job, entries=found.entries,
                  ended=outcome(found.job), card=portal.card(found.job))
