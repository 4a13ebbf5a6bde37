"""What runner-api's questions (does a user exist, what did a job print) ask and what answers them. Pure.

A question that cannot be asked of the cluster is answered here at once; the rest says what to
ask, and the answer is built from what the cluster said.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from bwvisu_common.errors import InvalidInput
from bwvisu_common.rpc import CheckUser, CheckUserReply, JobLog, JobLogReply
from bwvisu_common.templates import job_log_path
from bwvisu_common.validation import check_uid

MAX_LOG_LINES = 1000
_decode_check_user = msgspec.json.Decoder(CheckUser).decode
_decode_job_log = msgspec.json.Decoder(JobLog).decode


def check_user_request(request: bytes) -> str | CheckUserReply:
    """The user to ask the cluster about, or the reply when there is nothing to ask."""
    try:
        return check_uid(_decode_check_user(request).uid)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return CheckUserReply(error="malformed check-user request")
    except InvalidInput:
        return CheckUserReply(exists=False)  # not a possible user name: nobody has it


def check_user_reply(refusal: str | None) -> CheckUserReply:
    """The user gate's verdict as a reply."""
    return CheckUserReply(exists=refusal is None, reason=refusal or "")


@dataclass(frozen=True)
class LogRead:
    """Read the end of this file as this user."""

    uid: str
    path: str
    lines: int


def job_log_request(request: bytes, home_prefix: str) -> LogRead | JobLogReply:
    """Which file to read as whom, or the reply to a request that asks for nothing readable."""
    malformed = JobLogReply(error="malformed job-log request")
    try:
        req = _decode_job_log(request)
        uid = check_uid(req.uid)
    except (msgspec.DecodeError, msgspec.ValidationError, InvalidInput):
        return malformed
    if not req.job_id.isalnum() or not 1 <= req.lines <= MAX_LOG_LINES:
        return malformed
    return LogRead(uid=uid, path=job_log_path(home_prefix, uid, req.job_id), lines=req.lines)
