"""What runner-api needs beyond the shared ports (event store, state store, templates)."""

from __future__ import annotations

from typing import Protocol

from bwvisu_common.needs import ClusterFacts


class UserDirectory(Protocol):
    """Answers whether a user may run jobs on the cluster (exists, and is no system account)."""

    async def refusal(self, uid: str) -> str | None:
        """None if `uid` may run jobs, else why not; DependencyUnavailable when nobody could ask."""
        ...


class JobLogs(Protocol):
    """Reads the end of a job's log file on the cluster, as the job's user."""

    async def tail(self, uid: str, job_id: str, lines: int) -> str:
        """The last `lines` lines; DependencyUnavailable when the cluster cannot be asked."""
        ...


class ClusterFactsSource(Protocol):
    """What the cluster has of what the site's app bundles need (partitions, gres, commands)."""

    async def facts(self) -> ClusterFacts:
        """As last checked; DependencyUnavailable when nobody answers for the cluster."""
        ...

