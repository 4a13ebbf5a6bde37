"""The gateway agent's process: follow the log, reconcile, then handle events, probe, reconcile
and beat until a signal, or until one of them dies (named, and the agent stops: `bwvisu up` or
systemd starts it again, and the start-up reconcile picks up from the log).
"""

from __future__ import annotations

import argparse
import asyncio

from bwvisu_common.metrics import ConsumerLag
from bwvisu_common.service_process import ServiceProcess
from bwvisu_common.settings import Settings
from gateway_agent.bootstrap import agent_name, build, metrics_address
from gateway_agent.gateway import GatewayForwards
from gateway_agent.heartbeat import beat_forever


async def run(settings: Settings, args: argparse.Namespace, stop: asyncio.Event | None = None) -> None:
    name = agent_name(args.gateway)
    async with ServiceProcess(name, stop) as process:
        agent = await process.starting(build(settings, args.gateway, process.stack))
        await process.follow(agent.gateway.jobs)
        await agent.reconciler.start()
        process.spawn("heartbeat", beat_forever(agent.publish, agent.gateway))
        process.spawn("probe", agent.probes.run_forever())
        process.spawn("reconcile", agent.reconciler.run_forever())
        if agent.activity is not None:
            process.spawn("activity", agent.activity.run_forever())
        process.spawn("consume", agent.gateway.events.consume(name, agent.handlers.handle, process.stop))
        lag = ConsumerLag(name, agent.gateway.events.consumer_pending)
        process.metrics.add(lag, lag.sample)
        process.metrics.add(GatewayForwards(agent.gateway))
        process.serve_metrics(*metrics_address(settings, args.gateway))
        await process.run_until_stopped()
