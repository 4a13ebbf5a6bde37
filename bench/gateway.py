"""1,000 forwards installed in one iptables-restore batch vs one `iptables -w` call per rule.

    python -m bench.gateway [N]

Runs in throwaway network namespaces (never the machine's own iptables); needs root.
Prints both times and the ratio (target: batch >= 20x faster).
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import sys
import time

from gateway_agent.adapters.iptables import IptablesFirewall
from gateway_agent.adapters.netns import throwaway_netns
from gateway_agent.domain import rules as r
from gateway_agent.domain.rules import ForwardRule


def forwards(n: int) -> list[ForwardRule]:
    return [ForwardRule(job_id=f"bench{i // 4}", external_port=20000 + i,
                        target_ip=f"10.9.{i // 250}.{i % 250 + 1}", internal_port=30000 + i,
                        gateway_ip="10.8.0.1")
            for i in range(n)]


async def batched(n: int) -> float:
    with throwaway_netns("bwvbench") as ns:
        fw = IptablesFirewall(prefix=["ip", "netns", "exec", ns])
        await fw.ensure_chains()
        t0 = time.perf_counter()
        await fw.install(forwards(n))
        elapsed = time.perf_counter() - t0
        assert len(await fw.rules()) == n
        return elapsed


def one_by_one(n: int) -> float:
    with throwaway_netns("bwvbench") as ns:
        fw = IptablesFirewall(prefix=["ip", "netns", "exec", ns])
        asyncio.run(fw.ensure_chains())
        t0 = time.perf_counter()
        for rule in forwards(n):
            for line in (r.dnat_line(rule), r.snat_line(rule)):
                # The same rule text, one process per rule, as a naive agent would do it.
                subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "-t", "nat",
                                *shlex.split(line)], check=True)
        elapsed = time.perf_counter() - t0
        assert len(asyncio.run(fw.rules())) == n
        return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    batch = asyncio.run(batched(n))
    single = one_by_one(n)
    print(f"{n} forwards ({2 * n} rules)")
    print(f"  one iptables-restore batch: {batch * 1000:9.1f} ms")
    print(f"  one iptables -w per rule:   {single * 1000:9.1f} ms")
    print(f"  ratio: batch is {single / batch:.1f}x faster (target >= 20x)")


if __name__ == "__main__":
    main()
