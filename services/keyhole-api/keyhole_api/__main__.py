"""python -m keyhole_api --config PATH: the REST API running jobs call to get ports forwarded."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from contextlib import AsyncExitStack

import uvicorn

from bwvisu_common.errors import BwvisuError
from bwvisu_common.logs import setup_logging
from bwvisu_common.settings import Settings, load_settings
from keyhole_api.bootstrap import build

log = logging.getLogger(__name__)


async def run(settings: Settings) -> None:
    async with AsyncExitStack() as stack:
        app = await build(settings, stack)
        conf = settings.keyhole_api
        server = uvicorn.Server(uvicorn.Config(app, host=conf.host, port=conf.port, log_level="warning",
                                               access_log=False))
        log.info("listening on %s:%d", conf.host, conf.port)
        await server.serve()  # returns on SIGTERM/SIGINT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keyhole_api", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default: $BWVISU_CONFIG)")
    args = parser.parse_args(argv)
    setup_logging("keyhole-api")
    try:
        settings = load_settings(args.config)
        asyncio.run(run(settings))
    except BwvisuError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
