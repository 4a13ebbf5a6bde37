"""A gateway reads many jobs' histories in one pass over the stream, and the same as one by one."""

from __future__ import annotations

import pytest

from bwvisu_common import events as ev
from bwvisu_common.live_jobs import LiveJobs
from gateway_agent import gateway as gw_module
from gateway_agent.gateway import Gateway
from tests.fakes.event_store import InMemoryEventStore
from tests.fakes.firewall import InMemoryFirewall
from tests.fakes.prober import FakeProber
from tests.fakes.state_store import InMemoryStateStore


@pytest.mark.parametrize("jobs", [3, gw_module.SCAN_FROM + 5, 2 * gw_module.SCAN_BATCH // 3])
async def test_histories_in_bulk_equal_each_history(jobs: int) -> None:
    events, state = InMemoryEventStore(), InMemoryStateStore()
    gw = Gateway(name="gw0", own_ip="10.0.0.30", events=events, state=state, jobs=LiveJobs(events, state),
                 firewall=InMemoryFirewall(), prober=FakeProber())
    ids = [f"j{i}" for i in range(jobs)]
    for job_id in ids:  # interleaved, as a busy stream is
        await events.append([ev.JobSubmitted(job_id=job_id, uid="alice", template_name="t")])
    for job_id in ids:
        await events.append([ev.JobStarted(job_id=job_id, nodes=["cn0"]), ev.JobCompleting(job_id=job_id)])
    asked = [*ids[1:], "unknown"]
    found = await gw.histories(asked)
    assert set(found) == set(ids[1:])
    for job_id in ids[1:]:
        assert found[job_id] == await gw.history(job_id)
        assert [type(e).__name__ for e in found[job_id]] == ["JobSubmitted", "JobStarted", "JobCompleting"]
