"""Verification of a job's signed port request (DESIGN.md §6). Pure: the caller fetches the facts."""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass

from bwvisu_common.job_facts import JobState
from bwvisu_common.keyhole_client import sign
from bwvisu_common.read_model import JobView
from keyhole_api.errors import Refusal, Refused

JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# ASCII digits only: str.isdigit() also takes "²", which int() then rejects.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
# A host name (dot-separated labels; `_` as some sites name nodes), which is all a Slurm
# node plus the forwarding suffix can be.
NODE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*")
MAX_NODES = 256


@dataclass(frozen=True)
class PortRequest:
    count: int
    nodes: list[str]


def check_timestamp(timestamp: str | None, now: float, window: float) -> None:
    if not timestamp or not TIMESTAMP.fullmatch(timestamp):
        raise Refused(Refusal.NOT_AUTHENTIC,
                      "missing or malformed timestamp (whole seconds since the epoch)", kind="bad-timestamp")
    if abs(now - int(timestamp)) > window:
        raise Refused(Refusal.NOT_AUTHENTIC,
                      f"stale timestamp: {int(now) - int(timestamp)} s off (window {window:g} s)",
                      kind="stale-timestamp")


def check_signature(token: bytes, method: str, path: str, timestamp: str, body: bytes,
                    signature: str | None) -> None:
    expected = sign(token, method, path, timestamp, body)
    if not signature or not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Refused(Refusal.NOT_AUTHENTIC, "bad signature", kind="bad-signature")


def parse_body(body: bytes) -> PortRequest:
    try:
        data = json.loads(body)
        count, nodes = data["count"], data["nodes"]
    except (ValueError, KeyError, TypeError):
        raise Refused(Refusal.INVALID, "the body must be JSON with `count` and `nodes`") from None
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise Refused(Refusal.INVALID, "`count` must be a whole number >= 1")
    if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) and n for n in nodes):
        raise Refused(Refusal.INVALID, "`nodes` must be a non-empty list of host names")
    if len(nodes) > MAX_NODES:
        raise Refused(Refusal.INVALID, f"`nodes` lists more than {MAX_NODES} hosts")
    # Checked before any name reaches an event or a log line; the answer does not echo them.
    bad = sum(1 for n in nodes if not NODE.fullmatch(n))
    if bad:
        raise Refused(Refusal.INVALID, f"`nodes` holds {bad} name(s) that are not host names "
                                       "(letters, digits, '-' and '.', at most 253 characters)")
    return PortRequest(count=count, nodes=nodes)


def check_request(req: PortRequest, job: JobView, *, max_ports: int, suffix: str) -> None:
    """The request fits the job: not too many ports, exactly the job's nodes, job running."""
    if req.count > max_ports:
        raise Refused(Refusal.INVALID, f"too many ports: {req.count} asked, at most {max_ports} per job")
    if job.state not in (JobState.RUNNING, JobState.AVAILABLE):
        raise Refused(Refusal.NOT_RUNNING, f"job is {job.state}, not running")
    mine = sorted(n + suffix for n in job.nodes)
    if sorted(req.nodes) != mine:
        strangers = sorted(set(req.nodes) - set(mine))
        what = f"not the job's nodes: {', '.join(strangers)}" if strangers else "duplicate or missing nodes"
        raise Refused(Refusal.FOREIGN_NODES,
                      f"requested nodes are {what} (the job runs on {', '.join(mine)})")
