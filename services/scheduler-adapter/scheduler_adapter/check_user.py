"""The check-user responder: runner-api asks over core NATS whether a cluster user exists."""

from __future__ import annotations

import logging

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bwvisu_common.errors import InvalidInput
from bwvisu_common.rpc import CHECK_USER, CheckUser, CheckUserReply
from bwvisu_common.validation import check_uid
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.ports import Scheduler

log = logging.getLogger(__name__)

QUEUE = "scheduler-adapter"
_decode = msgspec.json.Decoder(CheckUser).decode
_encode = msgspec.json.Encoder().encode


async def answer(scheduler: Scheduler, request: bytes) -> bytes:
    """The JSON CheckUserReply for one JSON CheckUser request."""
    try:
        uid = check_uid(_decode(request).uid)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _encode(CheckUserReply(error="malformed check-user request"))
    except InvalidInput:
        return _encode(CheckUserReply(exists=False))  # not a possible user name: nobody has it
    try:
        return _encode(CheckUserReply(exists=await scheduler.user_exists(uid)))
    except SchedulerUnavailable as exc:
        log.warning("check-user %s: %s", uid, exc)
        return _encode(CheckUserReply(error=f"the cluster cannot be reached: {exc}"))


async def serve(nc: NatsClient, scheduler: Scheduler) -> Subscription:
    """Answer CHECK_USER requests in the queue group, so one replica answers each."""

    async def on_request(msg: Msg) -> None:
        reply = await answer(scheduler, msg.data)
        if msg.reply:
            await msg.respond(reply)

    return await nc.subscribe(CHECK_USER, queue=QUEUE, cb=on_request)
