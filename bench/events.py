"""Append + project N events through real nats-server and etcd, against a bare js.publish loop.

    python -m bench.events [N]

Prints events/s for each and the ratios; both run in this process against the same servers.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.servers import servers
from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import ALL_SUBJECTS, JetStreamEventStore, connect_nats
from bwvisu_common.projector import Projector

EVENTS_PER_JOB = 10


def job_events(job: str) -> list[ev.Event]:
    fwd = [ev.Forward(internal_port=20001, external_port=20001)]
    return [
        ev.JobSubmitted(job_id=job, uid="alice", template_name="xpra", variables={"runtime": "60"}),
        ev.JobQueued(job_id=job, slurm_id="1", command_node="login0"),
        ev.JobStarted(job_id=job, nodes=["cn0"]),
        ev.PortsRequested(job_id=job, count=1, nodes=["cn0"]),
        ev.PortsAssigned(job_id=job, gateway="gw0", nodes=["cn0"], forwards=fwd),
        ev.PortsForwarded(job_id=job, gateway="gw0", forwards=fwd),
        ev.PortOpen(job_id=job, external_port=20001),
        ev.JobCompleting(job_id=job),
        ev.JobEnded(job_id=job, slurm_state="COMPLETED", exit_code=0),
        ev.ForwardsRemoved(job_id=job, gateway="gw0"),
    ]


async def bench(n: int) -> None:
    with servers() as (nats_url, (etcd_host, etcd_port)):
        nc = await connect_nats([nats_url], "bench")
        store = JetStreamEventStore(nc)
        await store.ensure_stream()
        state = await EtcdStateStore.connect(etcd_host, etcd_port)
        js = nc.jetstream()
        jobs = [ev.new_job_id() for _ in range(n // EVENTS_PER_JOB)]

        # Baseline: the bare client, the same payload sizes, no checks, no projection.
        await js.add_stream(name="BARE", subjects=["bare.>"])
        payloads = [ev.encode(e) for j in jobs for e in job_events(j)]
        t0 = time.perf_counter()
        for i, payload in enumerate(payloads):
            await js.publish(f"bare.{i % len(jobs)}", payload)
        bare = time.perf_counter() - t0

        # Ours: per-job optimistic concurrency and dedup ids, as services append.
        t0 = time.perf_counter()
        for j in jobs:
            version = 0
            for event in job_events(j):
                version = await store.append([event], version)
        appended = time.perf_counter() - t0

        t0 = time.perf_counter()
        seq = await Projector(store, state).catch_up()
        projected = time.perf_counter() - t0
        loaded, stored = await state.load_jobs()
        assert stored == seq and len(loaded) == len(jobs), "projection incomplete"

        count = len(payloads)
        print(f"events: {count} ({len(jobs)} jobs x {EVENTS_PER_JOB}); subjects {ALL_SUBJECTS}")
        print(f"bare js.publish loop     {count / bare:10.0f} events/s")
        for label, took in (("append (checked, dedup)", appended), ("project into etcd", projected)):
            print(f"{label:<24} {count / took:10.0f} events/s   ratio to bare {took / bare:.2f}x")
        total = appended + projected
        print(f"append + project         {count / total:10.0f} events/s   ratio to bare {total / bare:.2f}x")
        await state.close()
        await nc.drain()


if __name__ == "__main__":
    asyncio.run(bench(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
