"""10,000 sessions: the watcher's squeue cycle, a gateway's forwards, and the stack holding the jobs.

    python -m bench.scale [N]        (N jobs, default 10,000; needs root for the network namespaces)

Three parts, each against its target and, where one exists, a baseline measured in this run:
1. parse + diff of an squeue answer of N of our jobs and N others (baseline: splitting the lines);
2. a gateway with N forwards adding/removing one (baseline: the whole-table way, before buckets),
   and its reconcile after a restart; real iptables in throwaway network namespaces;
3. N jobs of N/10 users fed into a real nats-server and etcd as the events they produce, and the
   projector, runner-api, keyhole-api and portal as processes: RSS, API and portal latencies.
No minicluster: nothing here touches Slurm, sshd or the shared gateways.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench import scale_gateway as gwb
from bench import scale_stack
from bench.scheduler import parse_and_diff, synthetic
from bench.servers import servers
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore, connect_nats

TARGET_SQUEUE = 0.1


def squeue(n: int) -> None:
    text, views = synthetic(n)
    runs = sorted(parse_and_diff(text, views) for _ in range(9))
    best, median, events = runs[0][0], runs[4][0], runs[0][1]
    bare = []
    for _ in range(9):
        t0 = time.perf_counter()
        [line.split("|") for line in text.splitlines()]
        bare.append(time.perf_counter() - t0)
    print(f"squeue: {2 * n} lines ({n} ours), {events} events decided (every job changed: the worst cycle)")
    print(f"  parse + diff: best {best:.3f} s, median {median:.3f} s; target < {TARGET_SQUEUE} s: "
          f"{'met' if median < TARGET_SQUEUE else 'MISSED'}; {median / min(bare):.1f}x the time to split "
          f"the lines alone ({min(bare) * 1000:.0f} ms)")


async def with_log(n: int, nats_url: str, etcd: tuple[str, int]) -> None:
    rules = gwb.forwards(n)
    nc = await connect_nats([nats_url], "bench-scale")
    store = JetStreamEventStore(nc)
    await store.ensure_stream()
    state = await EtcdStateStore.connect(*etcd)
    try:
        await gwb.load_log(store, state, rules)
        await gwb.restart_reconcile(store, state, rules)
    finally:
        await state.close()
        await nc.drain()
    jobs = {f.job_id: gwb.uid_of(f.job_id) for f in rules}
    await scale_stack.measure(nats_url, etcd, jobs, {f.job_id: f.external_port for f in rules})


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    squeue(n)
    gwb.forward_changes(n)
    with servers() as (nats_url, etcd):
        asyncio.run(with_log(n, nats_url, etcd))


if __name__ == "__main__":
    main()
