"""The keyhole-api process: follow the read model and the gateways' heartbeats, move forwards off
dead gateways, serve the API."""

from __future__ import annotations

import argparse
import asyncio

from bwvisu_common.service_process import ServiceProcess
from bwvisu_common.settings import Settings
from keyhole_api.app import create_app
from keyhole_api.bootstrap import bootstrap


async def run(settings: Settings, args: argparse.Namespace | None = None,
              stop: asyncio.Event | None = None) -> None:
    """Until SIGTERM/SIGINT (or `stop`); raises TaskDied, naming it, if the server or the read model ends."""
    async with ServiceProcess("keyhole-api", stop) as process:
        api = await process.starting(bootstrap(settings, process.stack))
        process.stack.push_async_callback(await api.heartbeats.follow(api.events.nats))
        await process.follow(api.jobs)
        process.spawn("failover", api.failover.run_forever())
        conf = settings.keyhole_api
        process.serve_http(create_app(api.handlers, api.heartbeats, max_body=conf.max_body_bytes,
                                      ready=process.healthy),
                           conf.host, conf.port)
        await process.run_until_stopped()
