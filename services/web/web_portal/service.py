"""run(): the portal's process: follow the read model, then serve the portal until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging

from bwvisu_common.service_process import CATCH_UP_TIMEOUT, ServiceProcess
from bwvisu_common.settings import Settings
from web_portal.app import create_app
from web_portal.bootstrap import bootstrap

log = logging.getLogger(__name__)


async def run(settings: Settings, args: argparse.Namespace | None = None,
              stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (SIGTERM/SIGINT set it when running as a process)."""
    web = settings.web
    async with ServiceProcess("web", stop) as process:
        deps = await process.starting(bootstrap(settings, process.stack))
        await process.follow(deps.feed, timeout=CATCH_UP_TIMEOUT)
        app = create_app(deps.portal, deps.session_secret, web.secure_cookies, web.session_max_age,
                         ready=process.healthy)
        # Client addresses come from the socket or trusted proxies' headers (domain/client_address),
        # never from uvicorn's own reading of forwarded headers.
        process.serve_http(app, web.host, web.port, proxy_headers=False)
        bundles = deps.portal.bundles
        log.info("portal ready on http://%s:%d/ with %d application(s): %s", web.host, web.port,
                 len(bundles), ", ".join(sorted(bundles)) or "none")
        await process.run_until_stopped()
