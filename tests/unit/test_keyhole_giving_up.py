"""keyhole-api gives up on an unanswered assignment only while it still awaits its answer."""

from __future__ import annotations

from bwvisu_common import events as ev
from keyhole_api.giving_up import give_up
from tests.fakes.event_store import InMemoryEventStore

FWD = [ev.Forward(internal_port=20050, external_port=20010)]


async def assigned_to_gw0(events: InMemoryEventStore) -> ev.PortsAssigned:
    await events.append([ev.JobSubmitted(job_id="j", uid="alice", template_name="t")])
    assigned = ev.PortsAssigned(job_id="j", gateway="gw0", nodes=["cn0"], forwards=FWD)
    await events.append([assigned])
    return assigned


async def kinds(events: InMemoryEventStore) -> list[str]:
    return [type(e).__name__ for _, e in await events.read_job("j")]


async def test_an_unanswered_assignment_is_given_up() -> None:
    events = InMemoryEventStore()
    assigned = await assigned_to_gw0(events)
    await events.append([ev.PortOpen(job_id="j", external_port=1, gateway="gw1")])  # not an answer
    assert await give_up(events, assigned, "no answer")
    assert (await kinds(events))[-1] == "PortsUnavailable"


async def test_a_gateway_that_answered_just_before_is_not_given_up_on() -> None:
    events = InMemoryEventStore()
    assigned = await assigned_to_gw0(events)
    await events.append([ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD)])
    assert not await give_up(events, assigned, "no answer")
    assert "PortsUnavailable" not in await kinds(events)


async def test_a_refused_or_superseded_assignment_stands_for_nothing_forwarded() -> None:
    events = InMemoryEventStore()
    assigned = await assigned_to_gw0(events)
    await events.append([ev.PortsUnavailable(job_id="j", gateway="gw0", forwards=FWD, reason="in use")])
    assert await give_up(events, assigned, "no answer")
    assert (await kinds(events)).count("PortsUnavailable") == 1


class AnsweredInBetween(InMemoryEventStore):
    """The gateway's answer goes in between keyhole-api's read and its append."""

    async def append(self, events, expected_version=None):  # type: ignore[no-untyped-def]
        if isinstance(events[0], ev.PortsUnavailable) and expected_version is not None:
            await super().append([ev.PortsForwarded(job_id="j", gateway="gw0", forwards=FWD)])
        return await super().append(events, expected_version)


async def test_an_answer_that_races_the_giving_up_wins_and_only_it_stands() -> None:
    events = AnsweredInBetween()
    assigned = await assigned_to_gw0(events)
    assert not await give_up(events, assigned, "no answer")
    assert await kinds(events) == ["JobSubmitted", "PortsAssigned", "PortsForwarded"]
