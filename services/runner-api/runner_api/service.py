"""run(): runner-api's process: follow the read model, then serve the job API until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging

from bwvisu_common.service_process import CATCH_UP_TIMEOUT, ServiceProcess
from bwvisu_common.settings import Settings
from runner_api.app import create_app
from runner_api.bootstrap import bootstrap

log = logging.getLogger(__name__)


async def run(settings: Settings, args: argparse.Namespace | None = None,
              stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (SIGTERM/SIGINT set it when running as a process)."""
    conf = settings.runner_api
    async with ServiceProcess("runner-api", stop) as process:
        deps = await process.starting(bootstrap(settings, process.stack))
        await process.follow(deps.live, timeout=CATCH_UP_TIMEOUT)
        log.info("runner-api ready: read model at stream sequence %d", deps.live.seq)
        app = create_app(deps.jobs, deps.external_ips, conf.user, deps.password, ready=process.healthy,
                         connect_urls=deps.connect_urls, cluster_facts=deps.cluster_facts)
        process.serve_http(app, conf.host, conf.port, tls_cert=conf.tls_cert, tls_key=conf.tls_key)
        await process.run_until_stopped()
