"""Requests between services over core NATS (not events: they change nothing)."""

from __future__ import annotations

import msgspec

CHECK_USER = "bwvisu.rpc.check-user"


class CheckUser(msgspec.Struct, frozen=True, kw_only=True):
    uid: str


class CheckUserReply(msgspec.Struct, frozen=True, kw_only=True):
    """`exists` is only meaningful when `error` is empty; an error means nobody could ask Slurm."""

    exists: bool = False
    error: str = ""
    # When `exists` is False: why the user may not run jobs (no such user, a system account, ...).
    reason: str = ""


JOB_LOG = "bwvisu.rpc.job-log"


class JobLog(msgspec.Struct, frozen=True, kw_only=True):
    """The last `lines` lines of a job's log file, read on a command node as the job's user."""

    uid: str
    job_id: str
    lines: int = 100


class JobLogReply(msgspec.Struct, frozen=True, kw_only=True):
    text: str = ""
    error: str = ""


CLUSTER_FACTS = "bwvisu.rpc.cluster-facts"


class ClusterFactsQuestion(msgspec.Struct, frozen=True, kw_only=True):
    """What the cluster has of what the site's app bundles need; the reply is needs.ClusterFacts."""
