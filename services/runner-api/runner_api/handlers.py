"""The use cases behind each endpoint: decide, append events, read the live model."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bwvisu_common import events as ev
from bwvisu_common.errors import ConcurrencyConflict, DependencyUnavailable, InvalidInput
from bwvisu_common.job_facts import FailureKind
from bwvisu_common.keyhole import session_secret_key
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.projections import FINISHED, JobView
from bwvisu_common.projector import LiveJobs
from runner_api.domain import Submission
from runner_api.errors import NotFound, SubmitFailed
from runner_api.ports import JobLogs, TemplateCatalog, UserDirectory

log = logging.getLogger(__name__)

# Users rarely disappear: one `id` per user and interval keeps SSH off the submit path.
USER_CACHE_SECONDS = 600.0


class Jobs:
    """Submit, cancel and look up jobs; check users."""

    def __init__(self, events: EventStore, live: LiveJobs, users: UserDirectory,
                 templates: TemplateCatalog, logs: JobLogs, submit_timeout: float = 60.0,
                 secrets: StateStore | None = None) -> None:
        self._events = events
        self._live = live
        self._users = users
        self._templates = templates
        self._logs = logs
        self._submit_timeout = submit_timeout
        self._known_users: dict[str, float] = {}
        self._secrets = secrets

    async def submit(self, sub: Submission) -> str:
        """Record JobSubmitted and answer once Slurm took the job or refused it."""
        if not self._templates.exists(sub.template_name):
            raise InvalidInput("template-name", f"no template named {sub.template_name!r}")
        await self.check_user(sub.uid)
        job_id = ev.new_job_id()
        submitted = ev.JobSubmitted(job_id=job_id, uid=sub.uid, template_name=sub.template_name,
                                    variables=sub.variables)
        version = await self._events.append([submitted], expected_version=0)
        job = await self._live.wait_for(job_id, _decided, self._submit_timeout)
        if job is None:
            job = await self._give_up(job_id, version)
        if job.state == FINISHED and not job.slurm_id:
            raise SubmitFailed(job.failure or FailureKind.REJECTED, job.why.text)
        return job_id

    async def _give_up(self, job_id: str, version: int) -> JobView:
        """Nobody submitted in time: record that, unless the scheduler got there first."""
        reason = f"no scheduler answered within {self._submit_timeout:.0f} s"
        try:
            await self._events.append(
                [ev.JobSubmitFailed(job_id=job_id, reason=reason, kind=FailureKind.UNAVAILABLE)], version
            )
        except ConcurrencyConflict:
            log.info("job %s: the scheduler answered as we gave up", job_id)
        job = await self._live.wait_for(job_id, _decided, 10.0)
        if job is None:
            raise DependencyUnavailable("the event stream did not show the job's outcome")
        return job

    def get(self, job_id: str) -> JobView:
        job = self._live.get(job_id)
        if job is None:
            raise NotFound("no such job")
        return job

    def get_for(self, job_id: str, uid: str | None) -> JobView:
        """The job; with `uid`, only if that user owns it (another user's job does not exist)."""
        job = self.get(job_id)
        if uid is not None and job.uid != uid:
            raise NotFound("no such job")
        return job

    async def session_secret(self, job: JobView) -> str:
        """The job's session secret ("" once the job is over or if it has none). Owners only."""
        if self._secrets is None or job.state == FINISHED:
            return ""
        found = await self._secrets.get_secret(session_secret_key(job.job_id))
        return found.decode() if found is not None else ""

    async def log_tail(self, job_id: str, lines: int, uid: str | None = None) -> str:
        job = self._live.get(job_id)
        if job is None or (uid is not None and job.uid != uid):
            raise NotFound("no such job")
        if not 1 <= lines <= 1000:
            raise InvalidInput("lines", "must be between 1 and 1000")
        return await self._logs.tail(job.uid, job_id, lines)

    def running(self, uid: str | None = None) -> list[str]:
        jobs = sorted(self._live.all(), key=lambda j: (j.submitted_at is None, j.submitted_at))
        return [j.job_id for j in jobs if j.state != FINISHED and (uid is None or j.uid == uid)]

    async def cancel(self, job_id: str, uid: str | None = None) -> None:
        def decide(job: JobView) -> ev.Event | None:
            return None if job.cancel_requested else ev.JobCancelRequested(job_id=job_id)

        await self._decide_on_running(job_id, uid, decide, "cancel")

    async def allow_client(self, job_id: str, uid: str, address: str) -> list[str]:
        """Record that the owner connects from `address`; the addresses the job now allows."""
        def decide(job: JobView) -> ev.Event | None:
            known = address in job.client_addresses
            return None if known else ev.ClientAddressAllowed(job_id=job_id, address=address)

        job = await self._decide_on_running(job_id, uid, decide, "record the address")
        if address in job.client_addresses:
            return list(job.client_addresses)
        log.info("job %s: owner connects from %s", job_id, address)
        return [*job.client_addresses, address]

    async def _decide_on_running(self, job_id: str, uid: str | None,
                                 decide: Callable[[JobView], ev.Event | None], what: str) -> JobView:
        """Append what `decide` makes of a running job (of `uid`, if given), on the condition that
        the job did not change meanwhile; the job as decided on. NotFound if none runs."""
        for _ in range(5):
            job = self._live.get(job_id)
            if job is None or job.state == FINISHED or (uid is not None and job.uid != uid):
                raise NotFound("no such running job")
            event = decide(job)
            if event is None:
                return job
            try:
                await self._events.append([event], job.seq)
                return job
            except ConcurrencyConflict:
                # Something happened to the job meanwhile (it may have ended): look again.
                await self._live.wait_for(job_id, _newer_than(job.seq), 2.0)
        raise DependencyUnavailable(f"job {job_id} changes too fast to {what}; try again")

    async def check_user(self, uid: str) -> None:
        """Raises NotFound, saying why, unless `uid` may run jobs (a real user of the cluster)."""
        if time.monotonic() - self._known_users.get(uid, -USER_CACHE_SECONDS) < USER_CACHE_SECONDS:
            return
        refusal = await self._users.refusal(uid)
        if refusal is not None:
            raise NotFound(refusal)
        self._known_users[uid] = time.monotonic()


def _newer_than(seq: int) -> Callable[[JobView], bool]:
    return lambda job: job.seq > seq


def _decided(job: JobView) -> bool:
    return bool(job.slurm_id) or job.state == FINISHED
