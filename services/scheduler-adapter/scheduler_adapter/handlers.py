"""What scheduler-adapter does with each event (submit, cancel, forget secrets; idempotent) and how
it answers runner-api's questions (does a user exist, what did a job print).

The decisions are domain/'s (submit, secrets, queries); here is only the I/O around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable

from bwvisu_common import events as ev
from bwvisu_common.election import Term
from bwvisu_common.errors import ConcurrencyConflict, DependencyUnavailable
from bwvisu_common.job_facts import JobState
from bwvisu_common.keyhole_script import new_session_secret
from bwvisu_common.ports import Election, EventStore, StateStore, Templates
from bwvisu_common.read_model import JobView, evolve, fold
from bwvisu_common.rpc import CheckUserReply, JobLogReply
from bwvisu_common.state_keys import session_secret_key, submission_role, token_key
from scheduler_adapter.domain.queries import check_user_reply, check_user_request, job_log_request
from scheduler_adapter.domain.render import SubmitConfig, render_job, template_name
from scheduler_adapter.domain.secrets import (
    JobSecrets,
    secret_names,
    secrets_to_store,
    stale_secrets,
    token_ttl,
)
from scheduler_adapter.domain.submit import (
    SUBMIT_FAILURES,
    Submit,
    cancel_failed,
    decide_cancel,
    decide_submit,
    found_earlier,
    is_decided,
    queued,
    submit_failed,
    unreachable,
    user_refused,
)
from scheduler_adapter.domain.users import UserPolicy
from scheduler_adapter.errors import SchedulerError, SchedulerUnavailable, SubmissionBusy, TemplateError
from scheduler_adapter.extensions import Extensions
from scheduler_adapter.ports import Scheduler
from scheduler_adapter.users import UserGate

log = logging.getLogger(__name__)

DURABLE = "scheduler-adapter"
MAX_CONFLICTS = 5
SWEEP_CONCURRENCY = 32
# How long a replica waits for another that submits the same job (a redelivery) before it lets the
# event come again later.
CLAIM_WAIT = 10.0


class JobHandlers:
    """Handles the events scheduler-adapter acts on, each at least once and safely more often."""

    def __init__(self, events: EventStore, state: StateStore, scheduler: Scheduler,
                 templates: Templates, config: SubmitConfig, in_flight: set[str] | None = None,
                 users: UserGate | None = None, election: Election | None = None,
                 known: Callable[[str], JobView | None] | None = None, max_extension: int = 0) -> None:
        self._events = events
        self._extensions = Extensions(events, scheduler, max_extension)
        # The jobs as this process's read model has them (it may lag the stream): what never
        # changes once known (a job's Slurm id, its end) is taken from there, not read again.
        self._known = known
        # Where replicas claim a job's submission; None: this is the only replica.
        self._election = election
        self._users = users if users is not None else UserGate(scheduler, UserPolicy())
        self._state = state
        self._scheduler = scheduler
        self._templates = templates
        self._config = config
        # Jobs being submitted right now; the watcher leaves them alone.
        self.in_flight = in_flight if in_flight is not None else set()

    async def handle(self, seq: int, event: ev.AnyEvent) -> None:
        match event:
            case ev.JobSubmitted():
                await self.on_submitted(event, seq)
            case ev.JobCancelRequested():
                await self.on_cancel_requested(event)
            case ev.JobEnded() | ev.JobSubmitFailed():
                await self.forget_secrets(event.job_id)
            case ev.JobExtensionRequested():
                await self._extensions.on_requested(event)

    async def forget_secrets(self, job_id: str) -> None:
        """The job is over: neither its keyhole token nor its session secret may open anything."""
        await asyncio.gather(*(self._state.delete_secret(name) for name in secret_names(job_id)))

    async def sweep_secrets(self, views: Iterable[JobView]) -> int:
        """Forget the secrets of every finished job: those whose end came while nobody deleted them."""
        stale = stale_secrets(views, await self._state.secret_names())
        for start in range(0, len(stale), SWEEP_CONCURRENCY):
            chunk = stale[start:start + SWEEP_CONCURRENCY]
            await asyncio.gather(*(self._state.delete_secret(n) for n in chunk))
        if stale:
            log.info("deleted %d secrets of jobs that had ended", len(stale))
        return len(stale)

    async def _current(self, job_id: str, from_seq: int = 1) -> tuple[JobView | None, int]:
        stored = await self._events.read_job(job_id, from_seq)
        view = fold(list(stored))
        return view, (stored[-1][0] if stored else 0)

    async def on_submitted(self, event: ev.JobSubmitted, submitted_seq: int | None = None) -> None:
        """`submitted_seq`: the event's stream sequence, when known (its history starts there)."""
        known = self._held_view(event, submitted_seq)
        if self._election is None:
            decision, seq, _ = await self._decide(event, known)
            await self._carry_out(event, decision, seq, None)
            return
        # Another replica may submit this job right now (the event came again while it worked):
        # only the holder of the job's submission role goes on, and decides once more first. The
        # role is asked for while the job is first looked at: both sit on the path of every POST /jobs.
        claiming = asyncio.get_running_loop().create_task(_claim(self._election, event.job_id))
        try:
            decision, seq, view = await self._first_look(event, known)
        except BaseException:
            await _drop(self._election, claiming)
            raise
        if not isinstance(decision, Submit):
            await _drop(self._election, claiming)
            await self._carry_out(event, decision, seq, None)
            return
        claim = await claiming
        try:
            decision, seq, _ = await self._decide(event, (view, seq))
            await self._carry_out(event, decision, seq, claim)
        finally:
            with contextlib.suppress(DependencyUnavailable):
                await self._election.resign(claim)

    def _held_view(self, event: ev.JobSubmitted, submitted_seq: int | None) -> tuple[JobView | None, int]:
        """The job as known without a read, up to a sequence: the read model's view, else the event."""
        held = self._known(event.job_id) if self._known is not None else None
        if held is not None:
            return held, held.seq
        return (evolve(None, event, submitted_seq), submitted_seq) if submitted_seq else (None, 0)

    async def _first_look(self, event: ev.JobSubmitted, known: tuple[JobView | None, int]
                          ) -> tuple[list[ev.Event] | Submit, int, JobView | None]:
        """The look before the claim is held, which only spares a claim for a job decided already:
        with a read model, its view (no read: it may lag, and the look under the claim reads
        what came since), else the log."""
        if self._known is None:
            return await self._decide(event, known, secrets_too=False)
        view, seq = known
        fresh = JobSecrets(secrets.token_hex(32), new_session_secret())
        return decide_submit(view, event, earlier=fresh, fresh=fresh, now=ev.utcnow()), seq, view

    async def _decide(self, event: ev.JobSubmitted, known: tuple[JobView | None, int], *,
                      secrets_too: bool = True) -> tuple[list[ev.Event] | Submit, int, JobView | None]:
        """Decide on the job as it stands: `known` is its view up to a sequence (None, 0: nothing
        known), so only the later events are read. The reads at once: they sit on the path of
        every POST /jobs.

        Without `secrets_too`, an earlier attempt's secrets are taken to exist: the decision is
        the same but for Submit (always Submit then), which only a decision with them may carry out."""
        job_id = event.job_id
        view, seq = known
        fresh = JobSecrets(secrets.token_hex(32), new_session_secret())
        if secrets_too:
            newer, token = await asyncio.gather(self._events.read_job(job_id, seq + 1),
                                                self._state.get_secret(token_key(job_id)))
            # An attempt stores the token whenever it stores secrets: no token, nothing earlier.
            session = None if token is None else await self._state.get_secret(session_secret_key(job_id))
            earlier = JobSecrets.earlier(token, session, fresh)
        else:
            newer, earlier = await self._events.read_job(job_id, seq + 1), fresh
        view = fold(list(newer), view)
        seq = newer[-1][0] if newer else seq
        return decide_submit(view, event, earlier=earlier, fresh=fresh, now=ev.utcnow()), seq, view

    async def _carry_out(self, event: ev.JobSubmitted, decision: list[ev.Event] | Submit, seq: int,
                         claim: Term | None) -> None:
        job_id = event.job_id
        if not isinstance(decision, Submit):
            if decision:
                await self._append_decision(job_id, seq, self._logged(decision))
            return
        self.in_flight.add(job_id)
        try:
            outcome = await self._submit(event, decision, claim)
            await self._append_decision(job_id, seq, self._logged(outcome))
        finally:
            self.in_flight.discard(job_id)

    async def _append_decision(self, job_id: str, seq: int, outcome: list[ev.Event]) -> None:
        for _ in range(MAX_CONFLICTS):
            try:
                await self._events.append(outcome, expected_version=seq)
                return
            except ConcurrencyConflict:
                view, seq = await self._current(job_id)
                if is_decided(view):
                    names = ", ".join(type(e).__name__ for e in outcome)
                    log.info("job %s was decided meanwhile; dropping %s", job_id, names)
                    return
        raise ConcurrencyConflict(job_id, seq)

    async def _submit(self, event: ev.JobSubmitted, plan: Submit, claim: Term | None = None
                      ) -> list[ev.Event]:
        """Look for an earlier attempt's job, render, ask the user gate, keep the secrets, sbatch."""
        job_id, uid = event.job_id, event.uid
        try:
            if plan.look_first:
                # An earlier attempt got as far as sbatch: find its job before any new submit.
                slurm_id = await self._scheduler.find(job_id, uid)
                found = found_earlier(job_id, slurm_id)
                if found:
                    log.info("job %s: found Slurm job %s from an earlier attempt", job_id, slurm_id)
                    return found
            script, has_ports = render_job(self._template(event), event, self._config, plan.secrets)
            refused = user_refused(job_id, await self._users.refusal(uid))
            if refused:
                return refused
            # Both secrets in etcd before sbatch: a job must never run with secrets nobody keeps.
            ttl = token_ttl(event.variables)
            await asyncio.gather(*(self._state.put_secret(name, value, ttl) for name, value
                                   in secrets_to_store(job_id, plan.secrets, has_ports).items()))
            if claim is not None:
                claim.check()  # the last moment another replica could have taken the job over
            done = await self._scheduler.submit(uid, script, job_id)
        except SUBMIT_FAILURES as exc:
            return [submit_failed(job_id, uid, exc)]
        log.info("job %s queued as Slurm job %s via %s", job_id, done.slurm_id, done.node or "?")
        return [queued(job_id, done.slurm_id, done.node)]

    def _template(self, event: ev.JobSubmitted) -> str:
        name = template_name(event)
        template = self._templates.load(name)
        if template is None:
            raise TemplateError(f"no such template: {name}")
        return template

    @staticmethod
    def _logged(outcome: list[ev.Event]) -> list[ev.Event]:
        for failure in outcome:
            if isinstance(failure, ev.JobSubmitFailed):
                log.info("job %s: submission failed (%s): %s", failure.job_id, failure.kind, failure.reason)
        return outcome

    async def on_cancel_requested(self, event: ev.JobCancelRequested) -> None:
        view = self._known(event.job_id) if self._known is not None else None
        if view is None or not (view.slurm_id or view.state == JobState.FINISHED):
            view, _ = await self._current(event.job_id)
        cancel = decide_cancel(view)
        if cancel is None:
            return
        try:
            await self._scheduler.cancel(cancel.uid, cancel.slurm_id)
        except SchedulerUnavailable:
            raise  # redelivered later
        except SchedulerError as exc:
            log.error("job %s: cancel failed: %s", event.job_id, exc)
            await self._events.append([cancel_failed(event.job_id, exc)])
            return
        log.info("job %s: scancel %s as %s", event.job_id, cancel.slurm_id, cancel.uid)


async def _claim(election: Election, job_id: str) -> Term:
    """The job's submission role; SubmissionBusy if another replica keeps it."""
    try:
        return await asyncio.wait_for(election.campaign(submission_role(job_id)), CLAIM_WAIT)
    except TimeoutError:
        raise SubmissionBusy(f"job {job_id}: another scheduler-adapter is submitting it") from None


async def _drop(election: Election, claiming: asyncio.Task[Term]) -> None:
    """A claim that turned out not to be needed: given back if it was had, its failure ignored."""
    claiming.cancel()
    try:
        claim = await claiming
    except (asyncio.CancelledError, Exception):  # not needed: whatever kept it from us is moot
        return
    with contextlib.suppress(DependencyUnavailable):
        await election.resign(claim)


class QueryHandlers:
    """Answers runner-api's questions from a command node; neither changes anything."""

    def __init__(self, scheduler: Scheduler, users: UserGate, home_prefix: str) -> None:
        self._scheduler = scheduler
        self._users = users
        self._home_prefix = home_prefix

    async def check_user(self, request: bytes) -> CheckUserReply:
        """The reply to one JSON CheckUser request."""
        uid = check_user_request(request)
        if isinstance(uid, CheckUserReply):
            return uid
        try:
            return check_user_reply(await self._users.refusal(uid))
        except SchedulerUnavailable as exc:
            log.warning("check-user %s: %s", uid, exc)
            return CheckUserReply(error=unreachable(exc))

    async def job_log(self, request: bytes) -> JobLogReply:
        """The reply to one JSON JobLog request: the end of the job's output file, read as its user."""
        read = job_log_request(request, self._home_prefix)
        if isinstance(read, JobLogReply):
            return read
        try:
            return JobLogReply(text=await self._scheduler.read_log(read.uid, read.path, read.lines))
        except SchedulerUnavailable as exc:
            log.warning("job-log %s: %s", read.path, exc)
            return JobLogReply(error=unreachable(exc))
