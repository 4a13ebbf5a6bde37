"""FakeRunner: the portal's JobRunner for unit tests; tests/unit/web/test_runner_contract.py holds it to
RunnerApiClient over a real runner-api app."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from bwvisu_common import events as ev
from bwvisu_common.errors import InvalidInput
from bwvisu_common.job_facts import JobState
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.run_time import ExtensionRefusal, extension_refusal
from bwvisu_common.validation import check_template_name, check_uid, check_variables
from tests.fakes.authenticator import USERS
from tests.fakes.event_store import InMemoryEventStore
from web_portal.errors import NotFound, Rejected, RunnerUnavailable

TEMPLATES = {"xpra-desktop", "web-app"}


def secret_of(job_id: str) -> str:
    """The session secret runner-api would hand the owner (a fixed fake per job)."""
    return f"secret-{job_id}"


class FakeRunner:
    """runner-api as the portal sees it: jobs go straight into the event log, queued at once."""

    def __init__(self, store: InMemoryEventStore, live: LiveJobs, users: set[str] | None = None) -> None:
        self.store = store
        self.live = live
        self.users = set(USERS) if users is None else users
        self.down = False
        self.logs: dict[str, str] = {}
        self.slurm_ids = iter(range(100, 100_000))
        self.max_extension = 0  # scheduler.max-extension

    async def submit(self, uid: str, template: str, variables: Mapping[str, str]) -> str:
        self._check_up()
        try:
            check_uid(uid)
            check_template_name(template)
            checked = check_variables(variables)
        except InvalidInput as exc:
            raise Rejected(exc.field, str(exc)) from exc
        if template not in TEMPLATES:
            raise Rejected("template-name", f"template-name: no template named {template!r}")
        if uid not in self.users:
            raise Rejected("uid", f"no such user on the cluster: {uid}")
        job_id = ev.new_job_id()
        seq = await self.store.append([ev.JobSubmitted(job_id=job_id, uid=uid, template_name=template,
                                                       variables=checked)], expected_version=0)
        await self.store.append([ev.JobQueued(job_id=job_id, slurm_id=str(next(self.slurm_ids)))], seq)
        await self.live.wait_for(job_id, lambda j: bool(j.slurm_id), 2.0)
        return job_id

    async def cancel(self, job_id: str, uid: str) -> None:
        self._check_up()
        job = self.live.get(job_id)
        if job is None or job.uid != uid or job.state == JobState.FINISHED:
            raise NotFound("no such running job")
        if not job.cancel_requested:
            await self.store.append([ev.JobCancelRequested(job_id=job_id)], job.seq)
            await self.live.wait_for(job_id, lambda j: j.cancel_requested, 2.0)

    async def extend(self, job_id: str, uid: str, minutes: int) -> None:
        """runner-api's rule (bwvisu_common.run_time) and Slurm's yes, at once."""
        self._check_up()
        job = self.live.get(job_id)
        if job is None or job.uid != uid or job.state == JobState.FINISHED:
            raise NotFound("no such running job")
        kind, reason = extension_refusal(job, minutes, self.max_extension)
        if kind is not ExtensionRefusal.NONE:
            raise Rejected("minutes", reason)
        request = ev.JobExtensionRequested(job_id=job_id, minutes=minutes)
        limit = (job.time_limit or int(job.variables.get("runtime", "60"))) + minutes
        await self.store.append([request, ev.JobExtended(job_id=job_id, request_id=request.event_id,
                                                         minutes=minutes, time_limit=limit)], job.seq)
        await self.live.wait_for(job_id, lambda j: j.extension_answered == request.event_id, 2.0)

    async def log_tail(self, job_id: str, uid: str, lines: int) -> str:
        self._check_up()
        job = self.live.get(job_id)
        if job is None or job.uid != uid:
            raise NotFound("no such job")
        return "\n".join(self.logs.get(job_id, "").splitlines()[-lines:])

    async def connect_url(self, job_id: str, uid: str) -> str:
        self._check_up()
        job = self.live.get(job_id)
        if job is None or job.uid != uid or not job.services or job.state == JobState.FINISHED:
            raise NotFound("no such session")
        port = job.services[0].external_port
        return f"http://192.0.2.30:{port}/index.html?autoconnect=true&password={secret_of(job_id)}"

    async def allow_client(self, job_id: str, uid: str, address: str) -> list[str]:
        self._check_up()
        job = self.live.get(job_id)
        if job is None or job.uid != uid or job.state == JobState.FINISHED:
            raise NotFound("no such running job")
        try:
            if str(ipaddress.IPv4Address(address)) != address:
                raise ValueError(address)
        except ValueError:
            raise Rejected("address", f"address: {address!r} is not an IPv4 address") from None
        if address not in job.client_addresses:
            await self.store.append([ev.ClientAddressAllowed(job_id=job_id, address=address)], job.seq)
            await self.live.wait_for(job_id, lambda j: address in j.client_addresses, 2.0)
        return [*job.client_addresses] + ([] if address in job.client_addresses else [address])

    def _check_up(self) -> None:
        if self.down:
            raise RunnerUnavailable("no command node answers")
