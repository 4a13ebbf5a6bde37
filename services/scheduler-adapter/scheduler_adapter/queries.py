"""runner-api's questions over core NATS: does a user exist, what did a job print.

Both are answered from a command node; neither changes anything, so they are requests,
not events. One replica in the queue group answers each; handlers.QueryHandlers answers.
"""

from __future__ import annotations

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bwvisu_common.rpc import CHECK_USER, JOB_LOG
from scheduler_adapter.handlers import QueryHandlers
from scheduler_adapter.ports import Scheduler
from scheduler_adapter.users import UserGate

QUEUE = "scheduler-adapter"
_encode = msgspec.json.Encoder().encode


async def serve(nc: NatsClient, scheduler: Scheduler, users: UserGate,
                home_prefix: str) -> list[Subscription]:
    """Answer both kinds of request in the queue group."""
    handlers = QueryHandlers(scheduler, users, home_prefix)

    async def on_check_user(msg: Msg) -> None:
        reply = await handlers.check_user(msg.data)
        if msg.reply:
            await msg.respond(_encode(reply))

    async def on_job_log(msg: Msg) -> None:
        reply = await handlers.job_log(msg.data)
        if msg.reply:
            await msg.respond(_encode(reply))

    return [await nc.subscribe(CHECK_USER, queue=QUEUE, cb=on_check_user),
            await nc.subscribe(JOB_LOG, queue=QUEUE, cb=on_job_log)]
