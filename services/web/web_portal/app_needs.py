"""Which apps can run on this cluster: the cluster's facts (asked of runner-api, kept briefly) judged
against each bundle's needs. An app whose needs could not be checked stays offered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from bwvisu_common.needs import RUNS, ClusterFacts, Verdict, judge
from web_portal.domain.bundles import Bundle
from web_portal.errors import RunnerUnavailable
from web_portal.ports import ClusterFactsSource

log = logging.getLogger(__name__)

# scheduler-adapter looks at the cluster every few minutes; asking it for every page would add a
# round trip to each page for nothing new.
FACTS_KEPT_FOR = 30.0
UNANSWERED_KEPT_FOR = 5.0  # a runner-api that did not answer is asked again soon, not at every page
# Every page of apps waits for this answer (one question at a time): a slow one is "could not check".
ASK_PATIENCE = 3.0


class AppNeeds:
    """The verdict on each bundle's needs, from the cluster's facts as runner-api last gave them."""

    def __init__(self, source: ClusterFactsSource | None, *, kept_for: float = FACTS_KEPT_FOR,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._kept_for = kept_for
        self._clock = clock
        self._facts: ClusterFacts | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def facts(self) -> ClusterFacts:
        """The cluster's facts; when runner-api cannot say, facts that say "could not check"."""
        async with self._lock:  # one question at a time: the others take its answer
            if self._facts is None or self._clock() >= self._until:
                self._facts, kept_for = await self._ask()
                self._until = self._clock() + kept_for
            return self._facts

    async def _ask(self) -> tuple[ClusterFacts, float]:
        if self._source is None:
            return _unchecked("no runner-api to ask"), self._kept_for
        try:
            return await asyncio.wait_for(self._source.cluster_facts(), ASK_PATIENCE), self._kept_for
        except TimeoutError:
            log.warning("runner-api did not say in %.0f s what the cluster has for the apps", ASK_PATIENCE)
            return _unchecked("runner-api did not answer in time"), UNANSWERED_KEPT_FOR
        except RunnerUnavailable as exc:
            log.warning("could not ask runner-api what the cluster has for the apps: %s", exc)
            return _unchecked(str(exc)), UNANSWERED_KEPT_FOR

    async def verdict(self, bundle: Bundle) -> Verdict:
        """Whether the app can run here; a bundle that needs nothing runs without asking anyone."""
        return judge(bundle.needs, await self.facts()) if bundle.needs.any else RUNS

    async def verdicts(self, bundles: Iterable[Bundle]) -> dict[str, Verdict]:
        return {b.name: await self.verdict(b) for b in bundles}


def _unchecked(why: str) -> ClusterFacts:
    return ClusterFacts(slurm_error=why, commands_error=why)
