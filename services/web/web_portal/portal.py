"""Everything the handlers use, built once by bootstrap.py (or by tests, with fakes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bwvisu_common.idle import IdlePolicy
from bwvisu_common.ports import PortProber
from bwvisu_common.read_model import JobView
from bwvisu_common.settings import CommandNode, GatewayNode
from web_portal.adapters.auth import TrustedHeaderAuthenticator
from web_portal.app_needs import AppNeeds
from web_portal.domain.bundles import Bundle
from web_portal.domain.client_address import Network
from web_portal.domain.login_limits import LoginLimits
from web_portal.domain.sessions import Card, card, sessions_of
from web_portal.ports import Authenticator, GatewayBeats, GroupDirectory, JobFeed, JobHistory, JobRunner
from web_portal.revocations import Revocations


@dataclass
class Portal:
    """The portal's collaborators and its few settings."""

    bundles: dict[str, Bundle]
    runner: JobRunner
    feed: JobFeed
    groups: GroupDirectory
    prober: PortProber
    authenticator: Authenticator | None = None  # PAM mode
    header_auth: TrustedHeaderAuthenticator | None = None  # SSO proxy mode
    beats: GatewayBeats | None = None
    history: JobHistory | None = None  # the event log, for the admin's job history pages
    admin_group: str = "bwvisu-admin"
    keep_finished_minutes: float = 60.0
    login_delay: float = 1.0
    login_limits: LoginLimits = field(default_factory=lambda: LoginLimits(10, 200, 300.0))
    session_max_age: int = 12 * 3600
    trusted_networks: list[Network] = field(default_factory=list)  # web.trusted-proxies
    gateways: list[GatewayNode] = field(default_factory=list)
    command_nodes: list[CommandNode] = field(default_factory=list)
    revocations: Revocations = field(default_factory=Revocations)
    # Whether a forward accepts only the client addresses its owner connected from.
    restrict_forwards: bool = False
    ending_warning: timedelta = timedelta(minutes=10)  # web.ending-warning
    max_extension: int = 0  # scheduler.max-extension: minutes Extend may add to a job in all
    clock: type[datetime] = datetime
    # Which apps the cluster can run (their bundles' needs against what it has).
    app_needs: AppNeeds = field(default_factory=lambda: AppNeeds(None))
    idle_policy: IdlePolicy = field(default_factory=IdlePolicy)  # the site's idle-timeout

    def now(self) -> datetime:
        return self.clock.now(UTC)

    def bundle_for(self, job: JobView) -> Bundle | None:
        """The bundle that launches the job's template (bundles sorted by name decide ties)."""
        return next((b for _, b in sorted(self.bundles.items()) if b.template == job.template_name), None)

    def own_job(self, job_id: str, user: str) -> JobView | None:
        """The job if `user` owns it; another user's job does not exist for them."""
        job = self.feed.get(job_id)
        return job if job is not None and job.uid == user else None

    def card(self, job: JobView) -> Card:
        return card(job, self.bundle_for(job), self.now(), self.idle_policy, warning=self.ending_warning,
                    max_extension=self.max_extension)

    def last_job_of(self, user: str, bundle: Bundle) -> JobView | None:
        """The user's most recent job of the bundle's app (its values start the next launch form)."""
        mine = [j for j in self.feed.of_user(user) if j.uid == user and j.template_name == bundle.template
                and j.submitted_at is not None]
        return max(mine, key=lambda j: j.submitted_at or self.now(), default=None)

    def cards(self, user: str | None) -> list[Card]:
        """The sessions of `user` (everyone's for None) to list now."""
        jobs = self.feed.all() if user is None else self.feed.of_user(user)
        jobs = sessions_of(jobs, user, self.now(), self.keep_finished_minutes)
        return [self.card(j) for j in jobs]

    def is_admin(self, user: str) -> bool:
        return self.groups.is_member(user, self.admin_group)
