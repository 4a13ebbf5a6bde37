"""What scheduler-adapter does with an owner's request for more run time: the I/O around
domain/extend.py. Idempotent: a request answered once is not acted on again."""

from __future__ import annotations

import logging

from bwvisu_common import events as ev
from bwvisu_common.errors import ConcurrencyConflict
from bwvisu_common.ports import EventStore
from bwvisu_common.read_model import fold
from scheduler_adapter.domain.extend import Extend, decide_extension, extended, refused
from scheduler_adapter.errors import SchedulerError, SchedulerUnavailable
from scheduler_adapter.ports import Scheduler

log = logging.getLogger(__name__)

ATTEMPTS = 5  # conflicting appends before the request is left to come again


class Extensions:
    """Answers JobExtensionRequested: scontrol sets the new limit, or the refusal says why not."""

    def __init__(self, events: EventStore, scheduler: Scheduler, max_extension: int) -> None:
        self._events = events
        self._scheduler = scheduler
        self._max = max_extension

    async def on_requested(self, request: ev.JobExtensionRequested) -> None:
        for _ in range(ATTEMPTS):
            try:
                await self._answer(request)
                return
            except ConcurrencyConflict:
                continue  # another replica read the base limit first: build on what it recorded
        raise SchedulerUnavailable(f"job {request.job_id}: its history keeps changing; trying again")

    async def _answer(self, request: ev.JobExtensionRequested) -> None:
        # The job's whole history, not the read model: whether this request was answered already
        # must be known for sure, and the base limit is in the job's last JobExtended.
        history = list(await self._events.read_job(request.job_id))
        view = fold(history)
        decision = decide_extension(view, request, self._max)
        if decision is None:
            return
        answer = decision if isinstance(decision, ev.JobExtensionRefused) else await self._extend(
            request, decision, history[-1][0])
        await self._events.append([answer])
        if isinstance(answer, ev.JobExtended):
            log.info("job %s: time limit of Slurm job %s set to %d minutes (+%d)", request.job_id,
                     decision.slurm_id if isinstance(decision, Extend) else "?", answer.time_limit,
                     answer.minutes)
        else:
            log.info("job %s: extension refused: %s", request.job_id, answer.reason)

    async def _extend(self, request: ev.JobExtensionRequested, plan: Extend,
                      version: int) -> ev.JobExtended | ev.JobExtensionRefused:
        try:
            base = plan.base
            if base is None:
                base = await self._scheduler.time_limit(plan.slurm_id)
                if base is None:
                    return refused(request, "the session has no time limit to extend")
                # Recorded before scontrol raises it: if this process dies in between, the request
                # comes again and sets the same limit, instead of reading the raised one as its base.
                # On the history it read: of two replicas handling one request, the second builds on
                # the first's base rather than reading the limit the first already raised.
                await self._events.append([ev.JobTimeLimitRead(job_id=request.job_id, time_limit=base)],
                                          expected_version=version)
            await self._scheduler.set_time_limit(plan.slurm_id, base + plan.minutes)
        except SchedulerUnavailable:
            raise  # the request comes again once Slurm answers
        except SchedulerError as exc:
            log.error("job %s: extension failed: %s", request.job_id, exc)
            return refused(request, f"Slurm did not extend it: {exc}")
        return extended(request, base + plan.minutes)
