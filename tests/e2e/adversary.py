"""The chaos test's adversary: a fixed, seeded plan of faults, each injected, held, then healed.

Faults: every service instance killed once (its supervisor restarts it), one NATS server, one
etcd member, a whole middleware node (its link down), one login node's sshd, one gateway (its
agent killed and its link down). The seed (BWVISU_CHAOS_SEED, else a fresh one) is printed first,
so a failing run can be replayed with the same order, targets, holds and gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.ha import MIDDLEWARE, HaSystem

SEED_ENV = "BWVISU_CHAOS_SEED"
# The processes `bwvisu up` supervises on each node (by the module each runs).
SERVICES = ("runner_api", "keyhole_api", "scheduler_adapter", "web_portal", "project")


@dataclass
class Fault:
    name: str
    inject: Callable[[], Awaitable[None]]
    heal: Callable[[], Awaitable[None]]
    hold: float  # seconds between inject and heal
    at: float = 0.0  # monotonic time of the injection
    healed_at: float = 0.0
    error: str = ""  # why the fault could not be injected or healed


@dataclass
class Adversary:
    system: HaSystem
    seed: int
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def planned(cls, system: HaSystem, seed: int | None = None) -> Adversary:
        if seed is None:
            seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
        adversary = cls(system, seed)
        adversary.faults = adversary._plan(random.Random(seed))
        return adversary

    def _plan(self, rng: random.Random) -> list[Fault]:
        s = self.system
        faults = [self._kill(f"kill {svc} on {node}", node, svc, rng)
                  for node in MIDDLEWARE for svc in SERVICES]
        faults.append(self._kill_in_ns("kill nats-server", rng.choice(MIDDLEWARE), "nats-server", rng))
        faults.append(self._kill_in_ns("kill etcd", rng.choice(MIDDLEWARE), "etcd", rng))
        node = rng.choice(MIDDLEWARE)
        faults.append(Fault(f"link down {node}", _sync(s.link, node, False), _sync(s.link, node, True),
                            rng.uniform(10, 20)))
        login = rng.choice(s.minicluster.login_nodes)
        faults.append(Fault(f"sshd killed on {login}", _sync(s.minicluster.stop_sshd, login),
                            _sync(s.minicluster.repair), rng.uniform(10, 20)))
        gw = rng.choice(s.minicluster.gateway_nodes)
        faults.append(Fault(f"gateway {gw} agent killed and link down", _sync(self._gateway_down, gw),
                            _sync(s.link, gw, True), rng.uniform(10, 20)))
        rng.shuffle(faults)
        return faults

    def _kill(self, name: str, node: str, package: str, rng: random.Random) -> Fault:
        def inject() -> None:
            pids = self.system.pids(package, node)
            if not pids:
                raise RuntimeError(f"no {package} runs on {node}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        return Fault(name, _sync(inject), _noop, rng.uniform(1, 5))

    def _kill_in_ns(self, name: str, node: str, comm: str, rng: random.Random) -> Fault:
        def inject() -> None:
            pids = [p for p in _ns_pids(node) if _comm(p) == comm]
            if not pids:
                raise RuntimeError(f"no {comm} runs on {node}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        return Fault(f"{name} on {node}", _sync(inject), _noop, rng.uniform(3, 8))

    def _gateway_down(self, gw: str) -> None:
        for pid in self.system.pids("gateway_agent"):
            if gw.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.system.link(gw, up=False)

    async def run(self, stop: asyncio.Event, start_after: float, gap: tuple[float, float],
                  injected: Callable[[Fault], object] = lambda fault: None) -> None:
        """Each fault in turn, `gap` seconds apart (seeded), until all ran or `stop` is set;
        `injected` is called as each fault goes in."""
        rng = random.Random(self.seed + 1)
        await _sleep_or_stop(stop, start_after)
        for fault in self.faults:
            if stop.is_set():
                return
            fault.at = time.monotonic()
            print(f"chaos: {fault.name} (hold {fault.hold:.1f} s)", flush=True)
            try:
                await fault.inject()
                injected(fault)
                await _sleep_or_stop(stop, fault.hold)
            except Exception as exc:  # reported in the summary: the run goes on with the next fault
                fault.error = f"inject: {exc}"
            finally:
                try:
                    await fault.heal()
                except Exception as exc:
                    fault.error += f" heal: {exc}"
                fault.healed_at = time.monotonic()
            await _sleep_or_stop(stop, rng.uniform(*gap))


def _sync(fn: Callable[..., object], *args: object) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        await asyncio.to_thread(fn, *args)

    return call


async def _noop() -> None:
    return None


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _ns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
