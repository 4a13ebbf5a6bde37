"""What the portal needs from the world, as small capabilities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from bwvisu_common.events import AnyEvent
from bwvisu_common.needs import ClusterFacts
from bwvisu_common.read_model import JobView


class Authenticator(Protocol):
    """Checks a user name and password."""

    async def authenticate(self, user: str, password: str) -> bool:
        """True only for a real account with that password; never raises for a wrong one."""
        ...


class JobRunner(Protocol):
    """Starts, cancels and reads jobs on the user's behalf (runner-api)."""

    async def submit(self, uid: str, template: str, variables: Mapping[str, str]) -> str:
        """The new job's id; Rejected (naming the field) or RunnerUnavailable otherwise."""
        ...

    async def cancel(self, job_id: str, uid: str) -> None:
        """Cancel the job if `uid` owns it and it runs; NotFound otherwise."""
        ...

    async def extend(self, job_id: str, uid: str, minutes: int) -> None:
        """Add `minutes` to owner `uid`'s running job in Slurm; NotFound if not theirs or over,
        Rejected("minutes", why) when the site's rule or Slurm refuses."""
        ...

    async def log_tail(self, job_id: str, uid: str, lines: int) -> str:
        """The end of the job's log, read as its owner `uid`; NotFound if not theirs."""
        ...

    async def connect_url(self, job_id: str, uid: str) -> str:
        """The application's URL with the session secret, for its owner `uid`; NotFound if not
        theirs or if it has none (yet)."""
        ...

    async def allow_client(self, job_id: str, uid: str, address: str) -> list[str]:
        """Record that owner `uid` connects from `address`; the addresses the job allows now.
        NotFound if not theirs or finished; Rejected("address", ...) for anything but IPv4."""
        ...


class ClusterFactsSource(Protocol):
    """What the cluster has of what the app bundles need, as runner-api last heard it."""

    async def cluster_facts(self) -> ClusterFacts:
        """The facts (their parts None where they could not be checked); RunnerUnavailable if runner-api
        does not answer."""
        ...


class JobFeed(Protocol):
    """The live read model of every job, and a way to wait for it to change."""

    @property
    def seq(self) -> int: ...

    def get(self, job_id: str) -> JobView | None: ...

    def all(self) -> list[JobView]: ...

    def of_user(self, uid: str) -> list[JobView]:
        """One user's jobs (in no particular order)."""
        ...

    async def changed(self, after_seq: int, timeout: float) -> int:
        """The sequence once it moved past `after_seq`, or the current one after `timeout` s."""
        ...


class JobHistory(Protocol):
    """One job's events, read from the event log (the admin's history page)."""

    async def read_job(self, job_id: str, from_seq: int = 1) -> list[tuple[int, AnyEvent]]:
        """The job's events in stream order with their sequences; [] for a job never seen.
        DependencyUnavailable if the log does not answer."""
        ...


class GroupDirectory(Protocol):
    """Unix group membership on the portal's host."""

    def is_member(self, user: str, group: str) -> bool: ...


class GatewayBeats(Protocol):
    """Heartbeats of the gateway agents."""

    timeout: float

    def last(self, gateway: str) -> tuple[float, int] | None:
        """(seconds since the agent's last heartbeat, forwards it holds), None if never heard."""
        ...


class RevokedLogins(Protocol):
    """Ended portal logins, shared by every replica (the state store)."""

    async def revoke_login(self, login_id: str, ttl: int) -> None: ...

    async def login_revoked(self, login_id: str) -> bool: ...
