"""The admin page: every session, the gateways and their forwards, the command nodes."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bwvisu_common.job_facts import JobState
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


@router.get("/admin")
async def admin_page(request: Request, user: User) -> Response:
    portal: Portal = request.app.state.portal
    if not portal.is_admin(user):
        raise Forbidden(f"The admin page is for members of the group {portal.admin_group!r}.")
    return render(request, "admin.html", cards=portal.cards(None), gateways=gateway_rows(portal),
                  command_nodes=await command_node_rows(portal), restricted=portal.restrict_forwards)
