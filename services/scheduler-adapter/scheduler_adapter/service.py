"""run(): scheduler-adapter's process: read model, event handlers, watcher and cluster queries until
stopped."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging

from bwvisu_common.election import lead
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.heartbeats import GatewayHeartbeats
from bwvisu_common.idle import IdlePolicy
from bwvisu_common.metrics import ConsumerLag
from bwvisu_common.read_model import JobView
from bwvisu_common.service_process import ServiceProcess
from bwvisu_common.settings import Settings
from bwvisu_common.state_keys import IDLE_ROLE, WATCHER_ROLE
from scheduler_adapter import app_needs, queries
from scheduler_adapter.bootstrap import bootstrap
from scheduler_adapter.handlers import DURABLE, JobHandlers
from scheduler_adapter.idle import IdleCuller, look_interval
from scheduler_adapter.ports import CommandRunner

log = logging.getLogger(__name__)


async def run(settings: Settings, args: argparse.Namespace | None = None,
              stop: asyncio.Event | None = None, *, runner: CommandRunner | None = None) -> None:
    """Serve until `stop` is set (SIGTERM/SIGINT set it when running as a process).

    Any number of replicas may run: each takes submissions and cancels from the shared durable
    consumer and answers queries; the one that holds the watcher role polls Slurm."""
    async with ServiceProcess("scheduler-adapter", stop) as process:
        deps = await process.starting(bootstrap(settings, process.stack, runner))
        await process.follow(deps.jobs)
        for subscription in await queries.serve(deps.nc, deps.scheduler, deps.users,
                                                settings.bwvisu_home_prefix):
            process.stack.push_async_callback(subscription.unsubscribe)
        if deps.needs is not None:
            process.stack.push_async_callback((await app_needs.serve(deps.nc, deps.needs)).unsubscribe)
            process.spawn_once("app-needs", deps.needs.run(process.stop))
        process.spawn("handlers", deps.events.consume(DURABLE, deps.handlers.handle, process.stop,
                                                      concurrency=settings.scheduler.concurrent_events))
        lag = ConsumerLag(DURABLE, deps.events.consumer_pending)
        process.metrics.add(lag, lag.sample)
        process.serve_metrics(settings.metrics.host, settings.metrics.scheduler_adapter_port)
        watch = functools.partial(deps.watcher.run, process.stop)
        process.spawn("watcher", lead(deps.election, WATCHER_ROLE, watch, process.stop))
        policy = IdlePolicy(settings.idle_timeout, settings.idle_warning)
        if policy.enabled:
            heartbeats = GatewayHeartbeats()
            process.stack.push_async_callback(await heartbeats.follow(deps.events.nats))
            culler = IdleCuller(deps.jobs.all, deps.events, policy, look_interval(settings.activity_interval),
                                counting=heartbeats.alive)
            process.spawn("idle", lead(deps.election, IDLE_ROLE, functools.partial(culler.run, process.stop),
                                       process.stop))
        process.spawn_once("sweep-secrets", _sweep(deps.handlers, deps.jobs.all()))
        log.info("scheduler-adapter: %d command nodes", len(settings.command_nodes))
        await process.run_until_stopped()


async def _sweep(handlers: JobHandlers, views: list[JobView]) -> None:
    """Once at start: secrets of jobs that ended while this service was down go now, not at their TTL."""
    try:
        await handlers.sweep_secrets(views)
    except DependencyUnavailable as exc:
        log.warning("could not sweep the secrets of ended jobs: %s", exc)
