"""Questions runner-api asks over core NATS: does a user exist, what did a job print.

Both are answered from a command node; neither changes anything, so they are requests,
not events. One replica in the queue group answers each."""

from __future__ import annotations

import logging

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bwvisu_common.errors import InvalidInput
from bwvisu_common.rpc import CHECK_USER, JOB_LOG, CheckUser, CheckUserReply, JobLog, JobLogReply
from bwvisu_common.templates import job_log_path
from bwvisu_common.validation import check_uid
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.ports import Scheduler
from scheduler_adapter.users import UserGate

log = logging.getLogger(__name__)

QUEUE = "scheduler-adapter"
_decode = msgspec.json.Decoder(CheckUser).decode
_decode_log = msgspec.json.Decoder(JobLog).decode
_encode = msgspec.json.Encoder().encode
MAX_LOG_LINES = 1000


async def answer(users: UserGate, request: bytes) -> bytes:
    """The JSON CheckUserReply for one JSON CheckUser request."""
    try:
        uid = check_uid(_decode(request).uid)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _encode(CheckUserReply(error="malformed check-user request"))
    except InvalidInput:
        return _encode(CheckUserReply(exists=False))  # not a possible user name: nobody has it
    try:
        refusal = await users.refusal(uid)
        return _encode(CheckUserReply(exists=refusal is None, reason=refusal or ""))
    except SchedulerUnavailable as exc:
        log.warning("check-user %s: %s", uid, exc)
        return _encode(CheckUserReply(error=f"the cluster cannot be reached: {exc}"))


async def answer_job_log(scheduler: Scheduler, home_prefix: str, request: bytes) -> bytes:
    """The JSON JobLogReply: the end of the job's output file, read as the job's user."""
    try:
        req = _decode_log(request)
        uid = check_uid(req.uid)
    except (msgspec.DecodeError, msgspec.ValidationError, InvalidInput):
        return _encode(JobLogReply(error="malformed job-log request"))
    if not req.job_id.isalnum() or not 1 <= req.lines <= MAX_LOG_LINES:
        return _encode(JobLogReply(error="malformed job-log request"))
    try:
        text = await scheduler.read_log(uid, job_log_path(home_prefix, uid, req.job_id), req.lines)
    except SchedulerUnavailable as exc:
        log.warning("job-log %s: %s", req.job_id, exc)
        return _encode(JobLogReply(error=f"the cluster cannot be reached: {exc}"))
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
