"""Builds scheduler-adapter's adapters from settings: the only place they are constructed."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient

from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.connect import finished_jobs_kept_for, open_stores
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.settings import Settings
from bwvisu_common.templates import FileTemplates
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.adapters.ssh import AsyncSshRunner
from scheduler_adapter.domain.users import UserPolicy
from scheduler_adapter.handlers import JobHandlers, SubmitConfig
from scheduler_adapter.users import UserGate
from scheduler_adapter.watcher import Watcher


@dataclass
class Deps:
    """What scheduler-adapter's process runs: the read model, the handlers, the watcher, the queries."""

    nc: NatsClient
    events: JetStreamEventStore
    jobs: LiveJobs
    scheduler: SlurmCli
    handlers: JobHandlers
    watcher: Watcher
    users: UserGate


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> Deps:
    """Connect to NATS, etcd and the command nodes; everything closes with `stack`."""
    events, state = await open_stores(settings, stack, "scheduler-adapter")
    runner = AsyncSshRunner.from_settings(settings)
    stack.push_async_callback(runner.close)
    tag = settings.scheduler.job_tag
    scheduler = SlurmCli(runner, tag)
    config = SubmitConfig(home_prefix=settings.bwvisu_home_prefix, tag=tag,
                          keyhole_servers=list(settings.keyholed_servers),
                          hostname_suffix=settings.forwarding_hostname_suffix)
    sched = settings.scheduler
    policy = UserPolicy(min_uid=sched.min_uid, max_uid=sched.max_uid, required_group=sched.required_group,
                        middleware_accounts=frozenset(node.user for node in settings.command_nodes))
    users = UserGate(scheduler, policy)
    handlers = JobHandlers(events, state, scheduler, FileTemplates(settings.templates_dir), config,
                           users=users)
    jobs = LiveJobs(events, state, kept_for=finished_jobs_kept_for(settings))
    watcher = Watcher(scheduler, jobs.all, events, tag=tag, interval=settings.scheduler.poll_interval,
                      absent_polls_to_finish=settings.scheduler.absent_polls_to_finish,
                      in_flight=handlers.in_flight)
    return Deps(events.nats, events, jobs, scheduler, handlers, watcher, users)
