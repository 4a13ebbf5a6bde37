"""Builds scheduler-adapter's adapters from settings: the only place they are constructed."""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NatsClient

from bwvisu_common.adapters.etcd_election import EtcdElection
from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.connect import etcd_members, finished_jobs_kept_for, identity_of, nats_auth, open_stores
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.settings import Settings, templates_path
from bwvisu_common.templates import FileTemplates
from scheduler_adapter.adapters.inventory import SinfoInventory
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.adapters.ssh import AsyncSshRunner
from scheduler_adapter.app_needs import NeedsChecker
from scheduler_adapter.domain.slurmctld import Backoff
from scheduler_adapter.domain.users import UserPolicy
from scheduler_adapter.handlers import JobHandlers, SubmitConfig
from scheduler_adapter.ports import CommandRunner
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
    election: EtcdElection
    needs: NeedsChecker | None = None  # what the cluster has of what the app bundles need


async def bootstrap(settings: Settings, stack: AsyncExitStack, runner: CommandRunner | None = None) -> Deps:
    """Connect to NATS, etcd and the command nodes; everything closes with `stack`.

    `runner`: commands go there instead of to the command nodes over SSH (tests, benchmarks)."""
    events, state = await open_stores(settings, stack, "scheduler-adapter")
    needs: NeedsChecker | None = None
    if runner is None:
        ssh = AsyncSshRunner.from_settings(settings)
        stack.push_async_callback(ssh.close)
        runner = ssh
        # Not with a given runner: its scripted cluster answers only what its test asks.
        needs = needs_checker(settings, runner)
    election = election_from(settings)
    stack.push_async_callback(election.close)  # before the stores: the roles are free at once
    tag = settings.scheduler.job_tag
    sched = settings.scheduler
    scheduler = SlurmCli(runner, tag, cancel_window=sched.cancel_batch_window,
                         cancel_batch=sched.cancel_batch_max, backoff=Backoff(most=sched.busy_backoff_max))
    stack.push_async_callback(scheduler.close)
    config = SubmitConfig(home_prefix=settings.bwvisu_home_prefix, tag=tag,
                          keyhole_servers=list(settings.keyholed_servers),
                          hostname_suffix=settings.forwarding_hostname_suffix)
    policy = UserPolicy(min_uid=sched.min_uid, max_uid=sched.max_uid, required_group=sched.required_group,
                        middleware_accounts=frozenset(node.user for node in settings.command_nodes))
    users = UserGate(scheduler, policy)
    jobs = LiveJobs(events, state, kept_for=finished_jobs_kept_for(settings))
    handlers = JobHandlers(events, state, scheduler, FileTemplates(settings.templates_dir), config,
                           users=users, election=election, known=jobs.get,
                           max_extension=sched.max_extension)
    watcher = Watcher(scheduler, jobs.all, events, tag=tag, interval=settings.scheduler.poll_interval,
                      absent_polls_to_finish=settings.scheduler.absent_polls_to_finish,
                      in_flight=handlers.in_flight, claims=election)
    return Deps(events.nats, events, jobs, scheduler, handlers, watcher, users, election, needs)


def needs_checker(settings: Settings, runner: CommandRunner) -> NeedsChecker:
    """Looks at the cluster for the needs of the bundles the portal offers (the same directory)."""
    bundles = Path(settings.web.bundles_dir) if settings.web.bundles_dir else templates_path(settings)
    return NeedsChecker(SinfoInventory(runner), bundles, interval=settings.app_needs.check_interval,
                        site_commands=settings.app_needs.compute_node_commands)


def election_from(settings: Settings) -> EtcdElection:
    """This replica's campaigns, on `etcd-servers` as scheduler-adapter; connects on first use."""
    auth = nats_auth(settings, identity_of("scheduler-adapter"))
    endpoints = etcd_members(settings)
    # Unique per process: a restarted replica on the same host is a new candidate.
    candidate = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
    return EtcdElection(endpoints, candidate, user=auth.user, password=auth.password, ca_file=auth.ca_file)
