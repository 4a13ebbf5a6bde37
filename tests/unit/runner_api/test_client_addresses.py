"""POST /jobs/<id>/clients: the owner's client addresses, recorded for source-restricted forwards."""

from __future__ import annotations

import pytest

from bwvisu_common import events as ev
from tests.fakes.event_store import InMemoryEventStore
from tests.unit.runner_api.test_api import AUTH, api, basic, body, live, logs, stores  # noqa: F401  (fixtures)


async def recorded(store: InMemoryEventStore, job_id: str) -> list[str]:
    return [e.address for _, e in await store.read_job(job_id) if isinstance(e, ev.ClientAddressAllowed)]


async def test_the_owner_adds_addresses_once_each(api, live):  # noqa: F811
    client, store, _, _ = api
    job_id = (await client.post("/jobs", json=body(), headers=AUTH)).json()["job-id"]
    for address, expected in [("192.0.2.7", ["192.0.2.7"]), ("198.51.100.2", ["192.0.2.7", "198.51.100.2"]),
                              ("192.0.2.7", ["192.0.2.7", "198.51.100.2"])]:
        r = await client.post(f"/jobs/{job_id}/clients", json={"uid": "alice", "address": address},
                              headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"response": "address allowed", "client-addresses": expected}
        # The next request is decided on the read model: it must have this address first.
        assert await live.wait_for(job_id, lambda j, a=address: a in j.client_addresses, 2.0)
    assert await recorded(store, job_id) == ["192.0.2.7", "198.51.100.2"]


@pytest.mark.parametrize("address", ["::1", "2001:db8::1", "10.0.0.0/8", "1.2.3", "01.2.3.4", " 1.2.3.4",
                                     "0.0.0.0", "224.0.0.1", "gw0", 17])
async def test_anything_but_one_ipv4_address_is_a_400_naming_the_field(api, address):  # noqa: F811
    client, store, _, _ = api
    job_id = (await client.post("/jobs", json=body(), headers=AUTH)).json()["job-id"]
    r = await client.post(f"/jobs/{job_id}/clients", json={"uid": "alice", "address": address}, headers=AUTH)
    assert r.status_code == 400 and r.json()["field"] == "address", r.text
    assert await recorded(store, job_id) == []


async def test_only_the_owner_of_a_job_not_finished(api, live):  # noqa: F811
    client, store, _, _ = api
    job_id = (await client.post("/jobs", json=body(), headers=AUTH)).json()["job-id"]
    url = f"/jobs/{job_id}/clients"
    r = await client.post(url, json={"uid": "bob", "address": "192.0.2.7"}, headers=AUTH)
    assert r.status_code == 404, "bob cannot let himself into alice's session"
    assert (await client.post("/jobs/nope/clients", json={"uid": "alice", "address": "192.0.2.7"},
                              headers=AUTH)).status_code == 404
    r = await client.post(url, json={"uid": "alice"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["field"] == "address"
    r = await client.post(url, json={"uid": "alice", "address": "192.0.2.7"}, headers=basic("x", "y"))
    assert r.status_code == 401
    await store.append([ev.JobEnded(job_id=job_id, slurm_state="COMPLETED", exit_code=0)])
    assert await live.wait_for(job_id, lambda j: j.state == "finished", 2.0)
    r = await client.post(url, json={"uid": "alice", "address": "192.0.2.7"}, headers=AUTH)
    assert r.status_code == 404 and r.json() == {"response": "no such running job"}
    assert await recorded(store, job_id) == []
