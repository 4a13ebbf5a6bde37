"""IptablesFirewall: forwards as iptables NAT rules, changed in batches by iptables-restore."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence

from prometheus_client import Histogram

from bwvisu_common.metrics import timed
from gateway_agent.domain import rules as r
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.errors import FirewallError

log = logging.getLogger(__name__)

RESTORE_SECONDS = Histogram("bwvisu_iptables_batch_duration_seconds",
                            "One iptables-restore batch of forward changes on a gateway",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))


class IptablesFirewall:
    """iptables in the current network namespace (or behind `prefix`, e.g. `ip netns exec NS`).

    Sees and changes only the rules tagged `tag`: another bwvisu's rules on the same gateway
    are left alone.
    """

    def __init__(self, prefix: Sequence[str] = (), iptables: str = "iptables", tag: str = r.TAG) -> None:
        self._prefix = list(prefix)
        self._iptables = iptables
        self._tag = tag
        self._lock = asyncio.Lock()  # one change at a time: each reads the chains first

    async def _run(self, *argv: str, stdin: str | None = None, check: bool = True) -> tuple[int, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._prefix, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise FirewallError(f"cannot run {argv[0]}: {exc}") from exc
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if check and proc.returncode != 0:
            raise FirewallError(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode().strip()}")
        return proc.returncode or 0, out.decode()

    @timed(RESTORE_SECONDS)
    async def _restore(self, lines: list[str]) -> None:
        if lines:
            # --noflush: only these lines change; -w: wait for the xtables lock, never fail on it.
            await self._run(f"{self._iptables}-restore", "--noflush", "-w", stdin=r.batch(lines))

    async def _save(self) -> str:
        _, out = await self._run(f"{self._iptables}-save", "-t", "nat")
        return out

    async def _present(self) -> list[r.RuleLine]:
        return r.parse_save(await self._save(), self._tag)

    async def ensure_chains(self) -> None:
        async with self._lock:
            for hook, chain in r.HOOKS:
                code, _ = await self._run(self._iptables, "-w", "-t", "nat", "-N", chain, check=False)
                jump = [hook, "-m", "comment", "--comment", "bwvisu", "-j", chain]
                code, _ = await self._run(self._iptables, "-w", "-t", "nat", "-C", *jump, check=False)
                if code != 0:
                    await self._run(self._iptables, "-w", "-t", "nat", "-I", *jump)
                    log.info("hooked %s into nat %s", chain, hook)

    async def rules(self) -> list[ForwardRule]:
        async with self._lock:
            return r.forwards(await self._present())

    async def install(self, rules: Sequence[ForwardRule]) -> None:
        async with self._lock:
            saved = await self._save()
            try:
                lines = r.missing_lines(rules, r.parse_save(saved, self._tag), self._tag)
            except ValueError as exc:
                raise FirewallError(str(exc)) from exc
            # Another bwvisu's forward on the same port would shadow ours: the port is not free.
            clash = r.foreign_ports(saved, self._tag) & {f.external_port for f in rules
                                                         if r.dnat_line(f, self._tag) in lines}
            if clash:
                raise FirewallError(f"port(s) {', '.join(map(str, sorted(clash)))} are forwarded "
                                    "by another bwvisu on this gateway")
            await self._restore(lines)

    async def remove_jobs(self, job_ids: Collection[str]) -> list[ForwardRule]:
        wanted = set(job_ids)
        async with self._lock:
            present = await self._present()
            await self._restore(r.delete_lines(present, wanted))
        return [f for f in r.forwards(present) if f.job_id in wanted]
