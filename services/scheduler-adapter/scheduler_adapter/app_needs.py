"""NeedsChecker: what the cluster has of what the site's app bundles need, looked at every few minutes
and kept, so that the portal may ask at any time without a command on the cluster.

Asked over core NATS (runner-api's `GET /apps/requirements`); one replica in the queue group
answers from what it last saw. What could not be looked at is said so (an error, no value), never
guessed: an answer older than a few intervals is dropped rather than passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bwvisu_common.app_links import BUNDLE_SUFFIX
from bwvisu_common.needs import COMMAND_NAME, ClusterFacts, Needs, commands_needed, needs_problem
from bwvisu_common.rpc import CLUSTER_FACTS
from scheduler_adapter.errors import SchedulerError
from scheduler_adapter.ports import ClusterInventory

log = logging.getLogger(__name__)

QUEUE = "scheduler-adapter"
STALE_AFTER_CHECKS = 3  # a look this many intervals old is no longer passed on
FIRST_LOOK_WAIT = 15.0  # seconds a question waits for the first look after a start
T = TypeVar("T")


class _BundleNeeds(msgspec.Struct):
    """Only a bundle's `needs`; the portal checks the rest of it."""

    needs: Needs = Needs()


def site_needs(bundles_dir: Path) -> list[Needs]:
    """The needs of every app bundle in the directory; a broken one is left out (the portal refuses
    to start with it, naming the problem)."""
    found = []
    for path in sorted(bundles_dir.glob(f"*{BUNDLE_SUFFIX}")):
        try:
            needs = msgspec.json.decode(path.read_bytes(), type=_BundleNeeds).needs
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("app bundle %s: its needs are left unchecked: %s", path, exc)
            continue
        problem = needs_problem(needs)
        if problem is not None:
            log.warning("app bundle %s: needs.%s: %s; its needs are left unchecked", path, *problem)
            continue
        found.append(needs)
    return found


class _Look(Generic[T]):
    """The last answer to one question (when it came), and the last attempt's error."""

    def __init__(self) -> None:
        self.value: T | None = None
        self.at = 0.0
        self.error = "not looked at yet"

    def took(self, value: T, at: float) -> None:
        self.value, self.at, self.error = value, at, ""

    def failed(self, error: str) -> None:
        self.error = error

    def fresh(self, now: float, max_age: float) -> T | None:
        return self.value if self.value is not None and now - self.at <= max_age else None


class NeedsChecker:
    """Looks at the cluster every `interval` seconds; `facts()` is what it last saw."""

    def __init__(self, inventory: ClusterInventory, bundles_dir: Path, *, interval: float = 300.0,
                 site_commands: Sequence[str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self._inventory = inventory
        self._bundles_dir = bundles_dir
        self._interval = interval
        self._site_commands = None if site_commands is None else frozenset(site_commands)
        self._clock = clock
        self._slurm: _Look[dict[str, list[str]]] = _Look()
        self._commands: _Look[dict[str, bool]] = _Look()
        self._looked = asyncio.Event()
        self._first_look_by = time.monotonic() + FIRST_LOOK_WAIT

    async def check(self) -> None:
        """One look at the cluster: sinfo, then the commands the bundles need (unless the site named them)."""
        names = [n for n in commands_needed(site_needs(self._bundles_dir)) if COMMAND_NAME.fullmatch(n)]
        try:
            await self._look(self._slurm, self._inventory.partitions())
            if self._site_commands is not None:
                sites = self._site_commands
                self._commands.took({n: n in sites for n in sorted(sites.union(names))}, self._clock())
            else:
                await self._look(self._commands, self._inventory.commands(names))
        finally:
            self._looked.set()

    async def _look(self, look: _Look[T], question: Awaitable[T]) -> None:
        at = self._clock()
        try:
            look.took(await question, at)
        except SchedulerError as exc:
            log.warning("could not check the cluster for the apps' needs: %s", exc)
            look.failed(str(exc))
        except Exception as exc:  # a surprise here must not stop scheduler-adapter's real work
            log.exception("checking the cluster for the apps' needs failed")
            look.failed(f"internal error: {exc!r}")

    def facts(self) -> ClusterFacts:
        now, max_age = self._clock(), STALE_AFTER_CHECKS * self._interval
        slurm, commands = self._slurm.fresh(now, max_age), self._commands.fresh(now, max_age)
        return ClusterFacts(
            partitions=slurm, slurm_error=self._slurm.error or ("" if slurm is not None else "too old"),
            slurm_checked_at=self._slurm.at,
            commands=commands,
            commands_error=self._commands.error or ("" if commands is not None else "too old"),
            commands_checked_at=self._commands.at,
            commands_source="site-list" if self._site_commands is not None else "login-node")

    async def answer(self) -> ClusterFacts:
        """What was last seen; right after a start, waits a little for the first look."""
        # Callbacks run one after another: each question waits out what is left of one wait, not its own.
        left = self._first_look_by - time.monotonic()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._looked.wait(), left)
        return self.facts()

    async def run(self, stop: asyncio.Event) -> None:
        """Look now and every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)


async def serve(nc: NatsClient, checker: NeedsChecker) -> Subscription:
    """Answer `bwvisu.rpc.cluster-facts` in the queue group."""
    encode = msgspec.json.Encoder().encode

    async def on_question(msg: Msg) -> None:
        facts = await checker.answer()
        if msg.reply:
            await msg.respond(encode(facts))

    return await nc.subscribe(CLUSTER_FACTS, queue=QUEUE, cb=on_question)
