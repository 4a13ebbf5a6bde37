"""Builds runner-api from settings: the only place its adapters are constructed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from bwvisu_common.app_links import bundle_connect_url
from bwvisu_common.connect import finished_jobs_kept_for, open_stores_retrying
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.secret_files import read_secret_file
from bwvisu_common.settings import Settings
from bwvisu_common.templates import FileTemplates
from runner_api.adapters.nats_requests import NatsClusterFacts, NatsJobLogs, NatsUserDirectory
from runner_api.handlers import Jobs
from runner_api.ports import ClusterFactsSource

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """What runner-api's process runs: the read model it follows and what its app serves."""

    live: LiveJobs
    jobs: Jobs
    external_ips: dict[str, str]  # gateway label -> the address clients reach it at
    password: str  # the API's basic-auth password
    connect_urls: Callable[[str], str]  # template name -> its app bundle's connect-url pattern
    cluster_facts: ClusterFactsSource | None = None  # what the cluster has of what the apps need


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> Deps:
    """Connect to NATS and etcd (waiting for them if they are not up yet); all closes with `stack`."""
    # Read before connecting: a missing password file is a configuration error, said at once.
    password = read_secret_file(settings.runner_api.password_file, "runner-api.password-file")
    templates = FileTemplates(settings.templates_dir)
    # The same app bundles as the portal's, so that both name the same connect URL.
    bundles = Path(settings.web.bundles_dir) if settings.web.bundles_dir else templates.directory
    events, state = await open_stores_retrying(settings, stack, "runner-api")
    live = LiveJobs(events, state, kept_for=finished_jobs_kept_for(settings))
    jobs = Jobs(events, live, NatsUserDirectory(events.nats), templates, NatsJobLogs(events.nats),
                secrets=state, max_extension=settings.scheduler.max_extension)
    return Deps(live=live, jobs=jobs,
                external_ips={g.label: g.external_ip for g in settings.gateway_nodes},
                password=password, connect_urls=lambda name: bundle_connect_url(bundles, name),
                cluster_facts=NatsClusterFacts(events.nats))
