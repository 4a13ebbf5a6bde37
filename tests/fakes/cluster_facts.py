"""FakeClusterFacts: what the cluster has for the apps, as runner-api's ClusterFactsSource (`facts`) and
as the portal's (`cluster_facts`); tests/unit/web/test_app_needs.py holds the portal's face to
RunnerApiClient over a real runner-api app answered by the other face."""

from __future__ import annotations

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.needs import ClusterFacts
from web_portal.errors import RunnerUnavailable


class FakeClusterFacts:
    """Answers `facts` as set; `down` = nobody answers for the cluster. Questions are counted."""

    def __init__(self, facts: ClusterFacts) -> None:
        self.facts_ = facts
        self.down = False
        self.asked = 0

    async def facts(self) -> ClusterFacts:
        self.asked += 1
        if self.down:
            raise DependencyUnavailable("no scheduler-adapter is running to ask the cluster")
        return self.facts_

    async def cluster_facts(self) -> ClusterFacts:
        try:
            return await self.facts()
        except DependencyUnavailable as exc:
            raise RunnerUnavailable("the cluster cannot be reached right now") from exc
