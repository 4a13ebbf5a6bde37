"""IptablesFirewall: forwards as iptables NAT rules, changed in batches by iptables-restore.

A change reads and writes only the chains it touches (see domain/rules.py on buckets): adding or
removing one forward costs the same with 10 or 10,000 forwards on the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Sequence

from prometheus_client import Histogram

from bwvisu_common.metrics import timed
from gateway_agent.domain import rules as r
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.errors import FirewallError

log = logging.getLogger(__name__)

RESTORE_SECONDS = Histogram("bwvisu_iptables_batch_duration_seconds",
                            "One iptables-restore batch of forward changes on a gateway",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))


class _Refused(FirewallError):
    """iptables-restore refused a batch made from what we read."""


READ_ALL_FROM = 8  # chains: reading more of them one by one takes longer than iptables-save


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
        # job -> the chains its rules were last seen in or written to. Complete once the whole table was
        # read (`_indexed`); a rule added by hand elsewhere is found by the next full read (a reconcile).
        self._where: dict[str, set[str]] = {}
        self._indexed = False
        # Buckets that exist with a jump to them, as last read or written: an install into them reads
        # just them. A jump deleted by hand comes back with the next full read (a reconcile).
        self._jumped: set[str] = set()

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

    async def _read(self, chains: Collection[str]) -> tuple[str, set[str]]:
        """These chains' rules in iptables-save's form, and which of them exist: one small read each,
        or for many (a reconcile's batch) the whole table in one read."""
        if len(chains) > READ_ALL_FROM:
            saved = await self._save()
            return saved, {line[1:].split(" ", 1)[0] for line in saved.splitlines() if line.startswith(":")}

        async def one(chain: str) -> tuple[int, str]:
            return await self._run(self._iptables, "-w", "-t", "nat", "-S", chain, check=False)

        answers = await asyncio.gather(*(one(c) for c in sorted(chains)))
        found = {c for c, (code, _) in zip(sorted(chains), answers, strict=True) if code == 0}
        return "".join(out for code, out in answers if code == 0), found

    def _remember(self, lines: Iterable[r.RuleLine]) -> None:
        for line in lines:
            self._where.setdefault(line.job_id, set()).add(line.text.split(" ", 2)[1])

    async def _present(self) -> list[r.RuleLine]:
        """Every rule of ours, read in full; from here on, which chains hold each job's rules is known."""
        saved = await self._save()
        present = r.parse_save(saved, self._tag)
        self._jumped = r.jumped(saved) & {line[1:].split(" ", 1)[0] for line in saved.splitlines()
                                          if line.startswith(":")}
        self._where = {}
        self._remember(present)
        self._indexed = True
        return present

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
            try:
                await self._install(rules)
            except _Refused:
                # The chains changed since we last looked (by hand, or another bwvisu on this gateway
                # made the same new bucket meanwhile): look again, parent chains included, once.
                self._jumped -= r.buckets_of(rules)
                await self._install(rules)

    async def _install(self, rules: Sequence[ForwardRule]) -> None:
        # The buckets these forwards go to: all that can hold them, or another bwvisu's forward on
        # one of their ports; and the parent chains (their jumps, rules from before buckets) unless
        # each bucket is known to be jumped to.
        buckets = r.buckets_of(rules)
        parents = {r.DNAT_CHAIN, r.SNAT_CHAIN} if buckets - self._jumped else set()
        saved, existing = await self._read({*parents, *buckets})
        present = r.parse_save(saved, self._tag)
        try:
            lines = r.missing_lines(rules, present, self._tag, bucketed=True)
        except ValueError as exc:
            raise FirewallError(str(exc)) from exc
        # Another bwvisu's forward on the same port would shadow ours: the port is not free.
        clash = r.foreign_ports(saved, self._tag) & {f.external_port for f in rules
                                                     if r.dnat_line(f, self._tag, True) in lines}
        if clash:
            raise FirewallError(f"port(s) {', '.join(map(str, sorted(clash)))} are forwarded "
                                "by another bwvisu on this gateway")
        taken = r.taken_ports(rules, present)
        if taken:
            raise FirewallError(f"port(s) {', '.join(map(str, sorted(taken)))} are forwarded "
                                "for another job")
        # A bucket gone (deleted by hand) had no jump left to it either.
        unsure = (buckets - self._jumped) | (buckets - existing)
        try:
            await self._restore([*r.bucket_setup(unsure, existing, saved), *lines])
        except FirewallError as exc:
            raise _Refused(str(exc)) from exc
        self._jumped |= buckets
        self._remember(present)
        self._remember(r.parse_save("\n".join(lines), self._tag))

    async def remove_jobs(self, job_ids: Collection[str]) -> list[ForwardRule]:
        wanted = set(job_ids)
        async with self._lock:
            if not self._indexed:
                await self._present()
            chains = {c for job_id in wanted for c in self._where.get(job_id, ())}
            if not chains:
                return []
            saved, _ = await self._read(chains)
            present = r.parse_save(saved, self._tag)
            await self._restore(r.delete_lines(present, wanted))
            for job_id in wanted:
                self._where.pop(job_id, None)
        return [f for f in r.forwards(present) if f.job_id in wanted]
