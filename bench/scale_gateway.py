"""A gateway with 10,000 forwards: one forward added or removed, and the reconcile after a restart.

Real iptables in throwaway network namespaces (needs root; both are removed even on failure), real
nats-server and etcd on loopback for the log the reconcile reads. The baseline, in the same run, is
the agent's way before buckets: every rule in one chain, the whole nat table read for each change.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.projector import Projector
from gateway_agent.adapters.iptables import IptablesFirewall
from gateway_agent.adapters.netns import throwaway_netns
from gateway_agent.domain import rules as r
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.gateway import Gateway
from gateway_agent.reconcile import Reconciler
from tests.fakes.prober import FakeProber

GATEWAY_IP = "10.8.0.1"
PORTS = (20000, 39999)  # the site's keyholed-port-range
NODES = 250
SAMPLES = 40
TARGET_P95 = 0.050
TARGET_RECONCILE = 5.0


def node_ip(node: int) -> str:
    return f"10.9.{node // 250}.{node % 250 + 1}"


def forwards(n: int, seed: int = 12) -> list[ForwardRule]:
    """n jobs with one forward each, ports picked at random from the range as keyhole-api does."""
    rng = random.Random(seed)
    externals = rng.sample(range(PORTS[0], PORTS[1] + 1), n)
    internals = [rng.randint(*PORTS) for _ in range(n)]
    return [ForwardRule(job_id=f"job{i:05d}", external_port=e, target_ip=node_ip(i % NODES),
                        internal_port=p, gateway_ip=GATEWAY_IP)
            for i, (e, p) in enumerate(zip(externals, internals, strict=True))]


class FlatFirewall(IptablesFirewall):
    """The baseline: the agent before buckets (one chain each, the whole table read per change)."""

    async def install(self, rules: Sequence[ForwardRule]) -> None:
        present = r.parse_save(await self._save(), self._tag)
        await self._restore(r.missing_lines(rules, present, self._tag))

    async def remove_jobs(self, job_ids: Collection[str]) -> list[ForwardRule]:
        present = r.parse_save(await self._save(), self._tag)
        await self._restore(r.delete_lines(present, set(job_ids)))
        return [f for f in r.forwards(present) if f.job_id in job_ids]


async def fill(fw: IptablesFirewall, rules: list[ForwardRule], chunk: int = 2000) -> None:
    await fw.ensure_chains()
    for i in range(0, len(rules), chunk):
        await fw.install(rules[i:i + chunk])


async def changes(fw: IptablesFirewall, extra: list[ForwardRule]) -> tuple[list[float], list[float]]:
    """Seconds to add each of `extra` (one forward a change), then to remove each again."""
    added, removed = [], []
    for rule in extra:
        t0 = time.perf_counter()
        await fw.install([rule])
        added.append(time.perf_counter() - t0)
    for rule in extra:
        t0 = time.perf_counter()
        await fw.remove_jobs([rule.job_id])
        removed.append(time.perf_counter() - t0)
    return added, removed


async def bare(extra: list[ForwardRule]) -> list[float]:
    """The floor: one iptables-restore of a forward's two lines, nothing read first."""
    fw = IptablesFirewall()
    took = []
    for rule in extra:
        lines = [r.dnat_line(rule, bucketed=True), r.snat_line(rule, bucketed=True)]
        t0 = time.perf_counter()
        await fw._restore(lines)
        took.append(time.perf_counter() - t0)
        await fw._restore(["-D" + line[2:] for line in lines])
    return took


async def inside(kind: str, n: int) -> dict[str, list[float]]:
    """Run in the namespace itself (as the agent runs on its gateway): fill it, then time changes."""
    rules, extra = forwards(n), spares(forwards(n), SAMPLES)
    if kind == "flat":
        flat = FlatFirewall()
        await flat.ensure_chains()
        await flat._restore([x for f in rules for x in (r.dnat_line(f), r.snat_line(f))])
        added, removed = await changes(flat, extra[:5])
        return {"added": added, "removed": removed}
    fw = IptablesFirewall()
    t0 = time.perf_counter()
    await fill(fw, rules)
    filled = time.perf_counter() - t0
    await fw.rules()  # a start-up reconcile reads everything once
    added, removed = await changes(fw, extra)
    return {"fill": [filled], "added": added, "removed": removed, "bare": await bare(extra[:10])}


def in_netns(kind: str, n: int) -> dict[str, list[float]]:
    with throwaway_netns("bwvscale") as ns:
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "bench.scale_gateway", kind,
                               str(n)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measurement in the namespace failed: {done.stderr[-2000:]}")
    result: dict[str, list[float]] = json.loads(done.stdout.splitlines()[-1])
    return result


def rss_mb(pid: int | str = "self") -> float:
    for field in Path(f"/proc/{pid}/status").read_text().splitlines():
        if field.startswith("VmRSS:"):
            return int(field.split()[1]) / 1024
    return 0.0


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


def line(label: str, samples: list[float]) -> str:
    return (f"{label:<44} p50 {statistics.median(samples) * 1000:7.1f} ms   "
            f"p95 {p95(samples) * 1000:7.1f} ms")


def spares(rules: list[ForwardRule], count: int) -> list[ForwardRule]:
    used = {f.external_port for f in rules}
    free = [p for p in range(PORTS[0], PORTS[1] + 1) if p not in used][:count]
    return [ForwardRule(job_id=f"extra{i}", external_port=p, target_ip=node_ip(i), internal_port=PORTS[0] + i,
                        gateway_ip=GATEWAY_IP) for i, p in enumerate(free)]


def forward_changes(n: int) -> None:
    ours, old = in_netns("buckets", n), in_netns("flat", n)
    floor = ours["bare"]
    print(f"gateway: {n} forwards ({2 * n} rules) installed in {ours['fill'][0]:.1f} s; each measured inside "
          "its own network namespace, as the agent runs on a gateway")
    print(line("  bare iptables-restore of the 2 lines", floor))
    for label, key in (("add one", "added"), ("remove one", "removed")):
        print(line(f"  {label}: one chain, whole table read (before)", old[key]))
        now, before = p95(ours[key]), p95(old[key])
        print(line(f"  {label}: buckets (now)", ours[key])
              + f"   {before / now:5.1f}x faster; {now / p95(floor):4.1f}x the bare restore; "
              f"target p95 <= {TARGET_P95 * 1000:.0f} ms: "
              f"{'met' if now <= TARGET_P95 else 'MISSED'}")


def job_events(rule: ForwardRule, node: str) -> list[ev.Event]:
    fwd = [ev.Forward(internal_port=rule.internal_port, external_port=rule.external_port)]
    job = rule.job_id
    return [ev.JobSubmitted(job_id=job, uid=uid_of(job), template_name="xpra-desktop"),
            ev.JobQueued(job_id=job, slurm_id=str(1000 + int(job[3:])), command_node="login0"),
            ev.JobStarted(job_id=job, nodes=[node]),
            ev.PortsAssigned(job_id=job, gateway="gw0", nodes=[node], forwards=fwd),
            ev.PortsForwarded(job_id=job, gateway="gw0", forwards=fwd)]


def resolver() -> Callable[[str], object]:
    async def resolve(node: str) -> str:
        return node_ip(int(node[2:]))
    return resolve


def uid_of(job_id: str) -> str:
    """1,000 users, ten jobs each."""
    return f"user{int(job_id[3:]) % 1000:03d}"


async def load_log(store: JetStreamEventStore, state: EtcdStateStore, rules: list[ForwardRule]) -> None:
    """The log of jobs forwarded on gw0, and its projection in etcd (as a running system has both)."""
    t0 = time.perf_counter()
    limit = asyncio.Semaphore(32)

    async def one(i: int, rule: ForwardRule) -> None:
        async with limit:
            await store.append(job_events(rule, f"cn{i % NODES:03d}"), expected_version=0)

    await asyncio.gather(*(one(i, f) for i, f in enumerate(rules)))
    await Projector(store, state).catch_up()
    users = len({uid_of(f.job_id) for f in rules})
    print(f"log: {len(rules)} jobs of {users} users, each running with a forward on gw0 ({5 * len(rules)} "
          f"events), appended and projected in {time.perf_counter() - t0:.1f} s")


async def restart_reconcile(store: JetStreamEventStore, state: EtcdStateStore,
                            rules: list[ForwardRule]) -> None:
    """The agent's start with the chains it left behind: read model, then a reconcile with the log."""
    with throwaway_netns("bwvscale") as ns:
        fw = IptablesFirewall(prefix=["ip", "netns", "exec", ns])
        await fill(fw, rules)  # what the agent left behind before its restart
        await reconcile_timed(store, state, IptablesFirewall(prefix=["ip", "netns", "exec", ns]), len(rules))


async def reconcile_timed(store: JetStreamEventStore, state: EtcdStateStore, fw: IptablesFirewall,
                          n: int) -> None:
    t0 = time.perf_counter()
    jobs = LiveJobs(store, state)
    await jobs.catch_up()
    caught_up = time.perf_counter() - t0
    gw = Gateway(name="gw0", own_ip="10.8.0.2", external_ip=GATEWAY_IP, events=store, state=state,
                 jobs=jobs, firewall=fw, prober=FakeProber(), resolve=resolver())  # type: ignore[arg-type]
    await Reconciler(gw).start()
    took = time.perf_counter() - t0
    assert gw.forward_count == n and len(await fw.rules()) == n, "the reconcile lost forwards"
    print(f"gateway restart with {n} forwards: read model caught up {caught_up:.2f} s; chains reconciled "
          f"with the log {took - caught_up:.2f} s; restart to reconciled {took:.2f} s; "
          f"target <= {TARGET_RECONCILE:.0f} s: {'met' if took <= TARGET_RECONCILE else 'MISSED'}")
    rss = rss_mb()
    verdict = "met" if rss <= 200 else "MISSED"
    print(f"  RSS of this process (the agent's read model and forward table, and the benchmark's own "
          f"data): {rss:.0f} MB, a bound on the agent's; target <= 200 MB: {verdict}")


if __name__ == "__main__":
    # `python -m bench.scale_gateway buckets|flat N`, inside a namespace (see in_netns): one JSON line.
    print(json.dumps(asyncio.run(inside(sys.argv[1], int(sys.argv[2])))))
