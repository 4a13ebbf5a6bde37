"""What scheduler-adapter does with each event: submit, cancel, forget secrets. Idempotent."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from bwvisu_common import events as ev
from bwvisu_common.errors import ConcurrencyConflict, InvalidInput
from bwvisu_common.job_facts import FailureKind, Why, WhyKind
from bwvisu_common.keyhole import keyhole_block, new_session_secret, session_secret_key
from bwvisu_common.keyhole import token_key as token_key
from bwvisu_common.ports import EventStore, StateStore
from bwvisu_common.projections import FINISHED, JobView, fold
from bwvisu_common.reasons import SBATCH_REFUSED
from bwvisu_common.validation import check_template_name
from scheduler_adapter.domain.render import JobContext, render_script
from scheduler_adapter.domain.slurm import job_name
from scheduler_adapter.domain.users import UserPolicy
from scheduler_adapter.errors import (
    CommandOutcomeUnknown,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRejected,
    TemplateError,
    UnknownUser,
)
from scheduler_adapter.ports import Scheduler, Templates
from scheduler_adapter.users import UserGate

log = logging.getLogger(__name__)

DURABLE = "scheduler-adapter"
# A token must outlive the queue wait and the run; JobEnded deletes it much earlier.
TOKEN_MARGIN = int(timedelta(days=7).total_seconds())
# A JobSubmitted nobody acted on for this long is refused rather than run by surprise.
SUBMIT_DEADLINE = timedelta(minutes=10)
MAX_CONFLICTS = 5
SWEEP_CONCURRENCY = 32


def token_ttl(variables: dict[str, str]) -> int:
    """Seconds: the job's runtime (minutes, if given) plus a week for the queue."""
    runtime = variables.get("runtime", "")
    minutes = int(runtime) if runtime.isdigit() else 0
    return minutes * 60 + TOKEN_MARGIN


@dataclass(frozen=True)
class SubmitConfig:
    home_prefix: str
    tag: str = "bwvisu"
    keyhole_servers: list[str] = field(default_factory=list)
    hostname_suffix: str = ""


@dataclass(frozen=True)
class _Secrets:
    """A job's keyhole token and session secret, as rendered into its script."""

    token: str
    session: str

    @classmethod
    def of(cls, token: bytes | None, session: bytes | None) -> _Secrets | None:
        """What an earlier attempt stored (its token tells that there was one), else None."""
        if token is None:
            return None
        return cls(token.decode(), session.decode() if session is not None else new_session_secret())


def _decided(view: JobView | None) -> bool:
    return view is None or bool(view.slurm_id) or view.state == FINISHED


class JobHandlers:
    """Handles the events scheduler-adapter acts on, each at least once and safely more often."""

    def __init__(self, events: EventStore, state: StateStore, scheduler: Scheduler,
                 templates: Templates, config: SubmitConfig, in_flight: set[str] | None = None,
                 users: UserGate | None = None) -> None:
        self._events = events
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

    async def forget_secrets(self, job_id: str) -> None:
        """The job is over: neither its keyhole token nor its session secret may open anything."""
        await asyncio.gather(self._state.delete_secret(token_key(job_id)),
                             self._state.delete_secret(session_secret_key(job_id)))

    async def sweep_secrets(self, views: Iterable[JobView]) -> int:
        """Forget the secrets of every finished job: those whose end came while nobody deleted them.

        Secrets of jobs the read model does not know yet are left alone: another replica may
        be submitting them right now (their lease ends them if not)."""
        finished = {v.job_id for v in views if v.state == FINISHED}
        names = await self._state.secret_names()
        stale = [n for n in names if n.partition("/")[2] in finished]
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

    async def on_submitted(self, event: ev.JobSubmitted, submitted_seq: int = 1) -> None:
        # A job's history starts at its JobSubmitted: no need to look at the stream before it.
        # Both reads at once: they sit on the path of every POST /jobs.
        (view, seq), token, session = await asyncio.gather(
            self._current(event.job_id, submitted_seq), self._state.get_secret(token_key(event.job_id)),
            self._state.get_secret(session_secret_key(event.job_id)),
        )
        if _decided(view):
            return
        assert view is not None
        self.in_flight.add(event.job_id)
        try:
            outcome = await self._submit(view, event, _Secrets.of(token, session))
            await self._append_decision(event.job_id, seq, outcome)
        finally:
            self.in_flight.discard(event.job_id)

    async def _append_decision(self, job_id: str, seq: int, outcome: ev.Event) -> None:
        for _ in range(MAX_CONFLICTS):
            try:
                await self._events.append([outcome], expected_version=seq)
                return
            except ConcurrencyConflict:
                view, seq = await self._current(job_id)
                if _decided(view):
                    log.info("job %s was decided meanwhile; dropping %s", job_id, type(outcome).__name__)
                    return
        raise ConcurrencyConflict(job_id, seq)

    async def _submit(self, view: JobView, event: ev.JobSubmitted, stored: _Secrets | None) -> ev.Event:
        job_id = event.job_id

        def failed(reason: str, kind: FailureKind = FailureKind.REJECTED) -> ev.JobSubmitFailed:
            log.info("job %s: submission failed (%s): %s", job_id, kind, reason)
            return ev.JobSubmitFailed(job_id=job_id, reason=reason, kind=kind)

        if view.cancel_requested:
            return failed("cancelled before it was submitted")
        if stored is None and ev.utcnow() - event.time > SUBMIT_DEADLINE:
            return failed("not submitted in time; please submit again", FailureKind.UNAVAILABLE)
        try:
            if stored is not None:
                # An earlier attempt got as far as sbatch: find its job before any new submit.
                slurm_id = await self._scheduler.find(job_id, event.uid)
                if slurm_id is not None:
                    log.info("job %s: found Slurm job %s from an earlier attempt", job_id, slurm_id)
                    return ev.JobQueued(job_id=job_id, slurm_id=slurm_id)
            # A retry renders the same secrets: the first attempt may be queued under them.
            chosen = stored or _Secrets(secrets.token_hex(32), new_session_secret())
            script, has_ports = self._render(event, chosen)
            # Checked here, where the facts are, whatever runner-api asked before.
            refusal = await self._users.refusal(event.uid)
            if refusal is not None:
                return failed(refusal, FailureKind.UNKNOWN_USER)
            await self._store(job_id, chosen, has_ports, token_ttl(event.variables))
            done = await self._scheduler.submit(event.uid, script, job_id)
        except TemplateError as exc:
            return failed(str(exc))
        except UnknownUser:
            return failed(f"no such user: {event.uid}", FailureKind.UNKNOWN_USER)
        except SubmitRejected as exc:
            return failed(f"{SBATCH_REFUSED}{exc}")
        except (SchedulerUnavailable, CommandOutcomeUnknown) as exc:
            return failed(f"the cluster cannot be reached: {exc}", FailureKind.UNAVAILABLE)
        log.info("job %s queued as Slurm job %s via %s", job_id, done.slurm_id, done.node or "?")
        return ev.JobQueued(job_id=job_id, slurm_id=done.slurm_id, command_node=done.node)

    async def _store(self, job_id: str, chosen: _Secrets, has_ports: bool, ttl: int) -> None:
        """Both secrets in etcd before sbatch: a job must never run with secrets nobody keeps."""
        puts = [self._state.put_secret(token_key(job_id), chosen.token.encode(), ttl)]
        if has_ports:
            # Only a job with ports has an application to protect, and a Connect to make.
            puts.append(self._state.put_secret(session_secret_key(job_id), chosen.session.encode(), ttl))
        await asyncio.gather(*puts)

    def _render(self, event: ev.JobSubmitted, chosen: _Secrets) -> tuple[str, bool]:
        """The script, and whether it asks for ports (only then it carries the session secret)."""
        try:
            name = check_template_name(event.template_name)
        except InvalidInput as exc:
            raise TemplateError(str(exc)) from exc
        template = self._templates.load(name)
        if template is None:
            raise TemplateError(f"no such template: {name}")
        cfg = self._config
        context = JobContext(job_id=event.job_id, uid=event.uid, home_prefix=cfg.home_prefix,
                             job_name=job_name(cfg.tag, event.job_id))

        expanded: list[int] = []

        def keyhole(count: int) -> str:
            expanded.append(count)
            return keyhole_block(count, job_id=event.job_id, token=chosen.token, servers=cfg.keyhole_servers,
                                 hostname_suffix=cfg.hostname_suffix, session_secret=chosen.session)

        return render_script(template, event.variables, context, keyhole), bool(expanded)

    async def on_cancel_requested(self, event: ev.JobCancelRequested) -> None:
        view, seq = await self._current(event.job_id)
        if view is None or view.state == FINISHED or not view.slurm_id:
            return  # nothing runs: already over, or the submit handler refuses it
        try:
            await self._scheduler.cancel(view.uid, view.slurm_id)
        except SchedulerUnavailable:
            raise  # redelivered later
        except SchedulerError as exc:
            log.error("job %s: cancel failed: %s", event.job_id, exc)
            note = ev.JobDetailsChanged.saying(event.job_id, Why(WhyKind.CANCEL_FAILED, str(exc)))
            await self._events.append([note])
            return
        log.info("job %s: scancel %s as %s", event.job_id, view.slurm_id, view.uid)
