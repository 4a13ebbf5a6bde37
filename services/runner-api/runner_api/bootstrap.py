"""Builds runner-api from settings: the only place its adapters are constructed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

from fastapi import FastAPI

from bwvisu_common.app_links import bundle_connect_url
from bwvisu_common.connect import open_stores_retrying
from bwvisu_common.projector import LiveJobs
from bwvisu_common.secret_files import read_secret_file
from bwvisu_common.settings import Settings
from bwvisu_common.templates import FileTemplates
from runner_api.adapters.cluster_queries import NatsJobLogs, NatsUserDirectory
from runner_api.app import create_app
from runner_api.handlers import Jobs

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> FastAPI:
    password = read_secret_file(settings.runner_api.password_file, "runner-api.password-file")
    holder: dict[str, Jobs] = {}
    templates = FileTemplates(settings.templates_dir)
    caught_up = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            events, state = await open_stores_retrying(settings, stack, "runner-api")
            live = LiveJobs(events, state)
            follower = asyncio.create_task(live.run(caught_up))
            stack.callback(follower.cancel)
            holder["jobs"] = Jobs(events, live, NatsUserDirectory(events.nats), templates,
                                  NatsJobLogs(events.nats), secrets=state)
            await asyncio.wait_for(caught_up.wait(), 60)
            log.info("runner-api ready: read model at stream sequence %d", live.seq)
            yield

    external_ips = {g.label: g.external_ip for g in settings.gateway_nodes}
    # The same app bundles as the portal's, so that both name the same connect URL.
    bundles = Path(settings.web.bundles_dir) if settings.web.bundles_dir else templates.directory
    return create_app(lambda: holder["jobs"], external_ips, settings.runner_api.user, password,
                      ready=caught_up.is_set, lifespan=lifespan,
                      connect_urls=lambda name: bundle_connect_url(bundles, name))
