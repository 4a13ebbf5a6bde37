"""run(): scheduler-adapter's tasks (read model, event handlers, watcher, check-user) until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from contextlib import AsyncExitStack

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.projections import JobView
from bwvisu_common.settings import Settings
from scheduler_adapter import queries
from scheduler_adapter.bootstrap import bootstrap
from scheduler_adapter.handlers import DURABLE, JobHandlers

log = logging.getLogger(__name__)


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (SIGTERM/SIGINT set it when running as a process)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        app = await bootstrap(settings, stack)
        caught_up = asyncio.Event()
        tasks = [asyncio.create_task(app.jobs.run(caught_up), name="read-model")]
        await caught_up.wait()
        subscriptions = await queries.serve(app.nc, app.scheduler, app.users,
                                            settings.bwvisu_home_prefix)
        tasks += [
            asyncio.create_task(app.events.consume(DURABLE, app.handlers.handle, stop), name="handlers"),
            asyncio.create_task(app.watcher.run(stop), name="watcher"),
        ]
        sweep = asyncio.create_task(_sweep(app.handlers, app.jobs.all()), name="sweep-secrets")
        log.info("scheduler-adapter running (%d command nodes)", len(settings.command_nodes))
        await _until_stopped(stop, tasks)
        for subscription in subscriptions:
            await subscription.unsubscribe()
        for task in (*tasks, sweep):
            task.cancel()
        await asyncio.gather(*tasks, sweep, return_exceptions=True)
    log.info("scheduler-adapter stopped")


async def _sweep(handlers: JobHandlers, views: list[JobView]) -> None:
    """Once at start: secrets of jobs that ended while this service was down go now, not at their TTL."""
    try:
        await handlers.sweep_secrets(views)
    except DependencyUnavailable as exc:
        log.warning("could not sweep the secrets of ended jobs: %s", exc)


async def _until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    for task in done:
        if task is not waiter and not task.cancelled() and task.exception() is not None:
            log.error("task %s died: %r", task.get_name(), task.exception())
            stop.set()
