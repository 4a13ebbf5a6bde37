"""python -m gateway_agent --config PATH --gateway NAME: forwards, probes and cleans up on one gateway.

Runs on the gateway itself (on the minicluster: inside the gateway's network namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from contextlib import AsyncExitStack

import msgspec

from bwvisu_common.errors import BwvisuError
from bwvisu_common.heartbeats import HEARTBEAT_INTERVAL, Heartbeat, heartbeat_subject
from bwvisu_common.logs import setup_logging
from bwvisu_common.settings import Settings, load_settings
from gateway_agent.bootstrap import build

log = logging.getLogger(__name__)
RECONCILE_EVERY = 30.0


async def run(settings: Settings, gateway: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        agent, jobs, events, nc = await build(settings, gateway, stack)
        caught_up = asyncio.Event()
        tasks = [asyncio.create_task(jobs.run(caught_up), name="live-jobs")]
        try:
            await caught_up.wait()
            await agent.start()

            async def heartbeat() -> None:
                encoder = msgspec.json.Encoder()
                while True:
                    with contextlib.suppress(Exception):
                        await nc.publish(heartbeat_subject(gateway),
                                         encoder.encode(Heartbeat(gateway=gateway,
                                                                  forwards=agent.forward_count)))
                    await asyncio.sleep(HEARTBEAT_INTERVAL)

            async def reconcile_forever() -> None:
                while True:
                    await asyncio.sleep(RECONCILE_EVERY)
                    try:
                        await agent.reconcile()
                    except Exception:
                        log.exception("reconcile failed; trying again later")

            tasks += [asyncio.create_task(heartbeat(), name="heartbeat"),
                      asyncio.create_task(agent.probe_forever(), name="probe"),
                      asyncio.create_task(reconcile_forever(), name="reconcile"),
                      asyncio.create_task(events.consume(f"gateway-agent-{gateway}", agent.handle, stop),
                                          name="consume")]
            log.info("gateway agent %s running", gateway)
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway_agent", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default: $BWVISU_CONFIG)")
    parser.add_argument("--gateway", required=True, help="this gateway's name in gateway-nodes")
    args = parser.parse_args(argv)
    setup_logging(f"gateway-agent[{args.gateway}]")
    try:
        asyncio.run(run(load_settings(args.config), args.gateway))
    except BwvisuError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
