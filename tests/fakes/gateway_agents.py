"""ScriptedGatewayAgents: the gateway agents as keyhole-api sees them, answering assignments
through the event store (tests/unit/test_gateway_agent.py tests the real agent's answers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bwvisu_common import events as ev
from bwvisu_common.ports import EventStore


@dataclass
class ScriptedGatewayAgents:
    """Forwards every assignment, except: ports listed in `busy` and the first `refuse_first`
    assignments are refused "in use" (their external ports recorded in `refused`), and gateways
    in `silent` never answer."""

    events: EventStore
    busy: set[int] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    refuse_first: int = 0
    refused: list[int] = field(default_factory=list)

    async def handle(self, _seq: int, event: ev.AnyEvent) -> None:
        if not isinstance(event, ev.PortsAssigned) or event.gateway in self.silent:
            return
        if any(f.external_port in self.busy for f in event.forwards) or self.refuse_first > 0:
            self.refuse_first -= 1
            self.refused += [f.external_port for f in event.forwards]
            reply: ev.Event = ev.PortsUnavailable(job_id=event.job_id, gateway=event.gateway,
                                                  forwards=event.forwards, reason="in use")
        else:
            reply = ev.PortsForwarded(job_id=event.job_id, gateway=event.gateway, forwards=event.forwards)
        await self.events.append([reply])
