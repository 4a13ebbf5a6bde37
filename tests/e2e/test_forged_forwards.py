"""The gateway agents check what the stream asks them to forward against the job (minicluster).

keyhole-api only assigns fitting ports, but an assignment in the stream that did not come from
it (forged by someone who reached the stream, or a bug) must not make a gateway forward to a
host that is not the job's node, nor take ports outside `keyholed-port-range`.
"""

from __future__ import annotations

import time

import httpx
import pytest

from bwvisu_common import events as ev
from tests.e2e.conftest import BwvisuSystem, Minicluster
from tests.e2e.test_forwarding import api, cancel, finished, job_nodes, rules_of, submit, wait_job  # noqa: F401

pytestmark = pytest.mark.timeout(300)


async def answer_to(system: BwvisuSystem, job_id: str, assignment: str, timeout: float = 30) -> ev.Event:
    """The gateway's PortsForwarded or PortsUnavailable after the given assignment."""
    deadline = time.monotonic() + timeout
    async with system.events() as events:
        while True:
            history = [e for _, e in await events.read_job(job_id)]
            ids = [e.event_id for e in history]
            later = history[ids.index(assignment) + 1:] if assignment in ids else []
            done = [e for e in later if isinstance(e, (ev.PortsForwarded, ev.PortsUnavailable))]
            if done:
                return done[0]
            assert time.monotonic() < deadline, f"no gateway answered assignment {assignment}"
            time.sleep(0.2)


async def test_forged_assignments_are_refused_and_install_nothing(
    api: httpx.AsyncClient, bwvisu_system: BwvisuSystem, minicluster: Minicluster  # noqa: F811
) -> None:
    job_id = await submit(api, "sleep", seconds="120", runtime="3")
    try:
        await wait_job(api, job_id, lambda j: j["state"] == "running")
        (node,) = await job_nodes(bwvisu_system, job_id)
        r = bwvisu_system.settings.keyholed_port_range
        gw = minicluster.gateway_nodes[0]
        forged = {
            "a host that is not the job's node": (["login0"], r.min, r.min),
            "the job's node and another": ([node, "login1"], r.min, r.min),
            "an internal port outside the range": ([node], 22, r.min),
            "an external port outside the range": ([node], r.min, r.max + 1),
        }
        for what, (nodes, internal, external) in forged.items():
            assigned = ev.PortsAssigned(job_id=job_id, gateway=gw, nodes=nodes,
                                        forwards=[ev.Forward(internal_port=internal, external_port=external)])
            async with bwvisu_system.events() as events:
                await events.append([assigned])
            answer = await answer_to(bwvisu_system, job_id, assigned.event_id)
            assert isinstance(answer, ev.PortsUnavailable), (what, answer)
            assert answer.reason.startswith("refused: "), (what, answer.reason)
            assert rules_of(minicluster, job_id)[gw] == [], what
        # Logged, with the names from the stream quoted, never raw.
        assert "nodes not the job's: 'login0'" in bwvisu_system.service_log(f"gateway-agent-{gw}")
    finally:
        await cancel(api, job_id)
    await wait_job(api, job_id, finished)
