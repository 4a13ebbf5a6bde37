"""Questions runner-api asks over core NATS: does a user exist, what did a job print.

Both are answered from a command node; neither changes anything, so they are requests,
not events. One replica in the queue group answers each. What a request means is
domain/queries.py's; here is the asking.
"""

from __future__ import annotations

import logging

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bwvisu_common.rpc import CHECK_USER, JOB_LOG, CheckUserReply, JobLogReply
from scheduler_adapter.domain.queries import check_user_reply, check_user_request, job_log_request
from scheduler_adapter.domain.submit import unreachable
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.ports import Scheduler
from scheduler_adapter.users import UserGate

log = logging.getLogger(__name__)

QUEUE = "scheduler-adapter"
_encode = msgspec.json.Encoder().encode


async def answer(users: UserGate, request: bytes) -> bytes:
    """The JSON CheckUserReply for one JSON CheckUser request."""
    uid = check_user_request(request)
    if isinstance(uid, CheckUserReply):
        return _encode(uid)
    try:
        return _encode(check_user_reply(await users.refusal(uid)))
    except SchedulerUnavailable as exc:
        log.warning("check-user %s: %s", uid, exc)
        return _encode(CheckUserReply(error=unreachable(exc)))


async def answer_job_log(scheduler: Scheduler, home_prefix: str, request: bytes) -> bytes:
    """The JSON JobLogReply: the end of the job's output file, read as the job's user."""
    read = job_log_request(request, home_prefix)
    if isinstance(read, JobLogReply):
        return _encode(read)
    try:
        text = await scheduler.read_log(read.uid, read.path, read.lines)
    except SchedulerUnavailable as exc:
        log.warning("job-log %s: %s", read.path, exc)
        return _encode(JobLogReply(error=unreachable(exc)))
    return _encode(JobLogReply(text=text))


async def serve(nc: NatsClient, scheduler: Scheduler, users: UserGate,
                home_prefix: str) -> list[Subscription]:
    """Answer both kinds of request in the queue group."""

    async def on_check_user(msg: Msg) -> None:
        reply = await answer(users, msg.data)
        if msg.reply:
            await msg.respond(reply)

    async def on_job_log(msg: Msg) -> None:
        reply = await answer_job_log(scheduler, home_prefix, msg.data)
        if msg.reply:
            await msg.respond(reply)

    return [await nc.subscribe(CHECK_USER, queue=QUEUE, cb=on_check_user),
            await nc.subscribe(JOB_LOG, queue=QUEUE, cb=on_job_log)]
