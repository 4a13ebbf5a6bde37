"""The use cases behind each endpoint: read the live model, decide (domain/jobs.py), append events."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Histogram

from bwvisu_common import events as ev
from bwvisu_common.errors import ConcurrencyConflict, DependencyUnavailable, InvalidInput
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.metrics import timed
from bwvisu_common.ports import EventStore, StateStore, Templates
from bwvisu_common.read_model import JobView
from bwvisu_common.state_keys import session_secret_key
from runner_api.domain.jobs import (
    allowed_clients,
    check_log_lines,
    decide_allow_client,
    decide_cancel,
    decide_extend,
    extension_answered,
    extension_outcome,
    gave_up,
    is_decided,
    owned,
    running,
    running_ids,
    submit_refusal,
)
from runner_api.domain.requests import Submission
from runner_api.errors import NotFound
from runner_api.ports import JobLogs, UserDirectory

log = logging.getLogger(__name__)

# Users rarely disappear: one `id` per user and interval keeps SSH off the submit path.
USER_CACHE_SECONDS = 600.0

# A submission over an open SSH connection takes tens of milliseconds; a dead node costs seconds.
SUBMIT_SECONDS = Histogram(
    "bwvisu_submit_duration_seconds", "POST /jobs, from the request to Slurm's answer (or the refusal)",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))


class Jobs:
    """Submit, cancel and look up jobs; check users."""

    def __init__(self, events: EventStore, live: LiveJobs, users: UserDirectory,
                 templates: Templates, logs: JobLogs, submit_timeout: float = 60.0,
                 secrets: StateStore | None = None, max_extension: int = 0,
                 extend_timeout: float = 20.0) -> None:
        self.max_extension = max_extension  # minutes an owner may add to a job in all (0: none)
        self._extend_timeout = extend_timeout
        self._events = events
        self._live = live
        self._users = users
        self._templates = templates
        self._logs = logs
        self._submit_timeout = submit_timeout
        self._known_users: dict[str, float] = {}
        self._secrets = secrets

    @timed(SUBMIT_SECONDS)
    async def submit(self, sub: Submission) -> str:
        """Record JobSubmitted and answer once Slurm took the job or refused it."""
        if not self._templates.exists(sub.template_name):
            raise InvalidInput("template-name", f"no template named {sub.template_name!r}")
        await self.check_user(sub.uid)
        job_id = ev.new_job_id()
        submitted = ev.JobSubmitted(job_id=job_id, uid=sub.uid, template_name=sub.template_name,
                                    variables=sub.variables)
        version = await self._events.append([submitted], expected_version=0)
        job = await self._live.wait_for(job_id, is_decided, self._submit_timeout)
        if job is None:
            job = await self._give_up(job_id, version)
        refusal = submit_refusal(job)
        if refusal is not None:
            raise refusal
        return job_id

    async def _give_up(self, job_id: str, version: int) -> JobView:
        """Nobody submitted in time: record that, unless the scheduler got there first."""
        try:
            await self._events.append([gave_up(job_id, self._submit_timeout)], version)
        except ConcurrencyConflict:
            log.info("job %s: the scheduler answered as we gave up", job_id)
        job = await self._live.wait_for(job_id, is_decided, 10.0)
        if job is None:
            raise DependencyUnavailable("the event stream did not show the job's outcome")
        return job

    def get(self, job_id: str) -> JobView:
        return owned(self._live.get(job_id), None)

    def get_for(self, job_id: str, uid: str | None) -> JobView:
        """The job; with `uid`, only if that user owns it (another user's job does not exist)."""
        return owned(self._live.get(job_id), uid)

    async def session_secret(self, job: JobView) -> str:
        """The job's session secret ("" once the job is over or if it has none). Owners only."""
        if self._secrets is None or job.state == JobState.FINISHED:
            return ""
        found = await self._secrets.get_secret(session_secret_key(job.job_id))
        return found.decode() if found is not None else ""

    async def log_tail(self, job_id: str, lines: int, uid: str | None = None) -> str:
        job = owned(self._live.get(job_id), uid)
        return await self._logs.tail(job.uid, job_id, check_log_lines(lines))

    def running(self, uid: str | None = None) -> list[str]:
        # One user's jobs from the read model's index: not a look at every job in the system.
        return running_ids(self._live.all() if uid is None else self._live.of_user(uid), uid)

    async def cancel(self, job_id: str, uid: str | None = None) -> None:
        await self._decide_on_running(job_id, uid, decide_cancel, "cancel")

    async def allow_client(self, job_id: str, uid: str, address: str) -> list[str]:
        """Record that the owner connects from `address`; the addresses the job now allows."""
        job, decided = await self._decide_on_running(
            job_id, uid, lambda job: decide_allow_client(job, address), "record the address")
        if decided:
            log.info("job %s: owner connects from %s", job_id, address)
        return allowed_clients(job, decided)

    async def extend(self, job_id: str, uid: str, minutes: int) -> JobView:
        """Add `minutes` to the owner's running job in Slurm; the job as extended. Waits for
        scheduler-adapter's answer, so that a refusal (Slurm's too) reaches the owner."""
        _, decided = await self._decide_on_running(
            job_id, uid, lambda job: decide_extend(job, minutes, self.max_extension), "extend it")
        request_id = decided[0].event_id
        job = await self._live.wait_for(job_id, extension_answered(request_id), self._extend_timeout)
        if job is None:
            raise DependencyUnavailable("the cluster did not answer in time; the extension may still be made")
        job = extension_outcome(job, request_id)
        log.info("job %s: extended by %d minutes (time limit %d)", job_id, minutes, job.time_limit)
        return job

    async def _decide_on_running(self, job_id: str, uid: str | None,
                                 decide: Callable[[JobView], list[ev.Event]],
                                 what: str) -> tuple[JobView, list[ev.Event]]:
        """Append what `decide` makes of a running job (of `uid`, if given), on the condition that
        the job did not change meanwhile; the job as decided on and the events appended.
        NotFound if none runs."""
        for _ in range(5):
            job = running(self._live.get(job_id), uid)
            decided = decide(job)
            if not decided:
                return job, []
            try:
                await self._events.append(decided, job.seq)
                return job, decided
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
