"""What the API's client is told when a job could not be submitted or a dependency failed.

The job's history (its JobSubmitFailed event) and the logs keep the full story: which command
node, sbatch's and sudo's own words. The client gets a reason it can act on, without the
cluster's internal host names and addresses.
"""

from __future__ import annotations

import re

from bwvisu_common.job_facts import FailureKind, Why, WhyKind

UNAVAILABLE = "the cluster cannot be reached right now; try again later"
SERVICE_UNAVAILABLE = "the cluster or a bwvisu service is unavailable right now; try again later"
SBATCH_REFUSED = "sbatch refused the job: "  # how a refusal's reason begins (the scheduler writes it)
_SCHEDULER_ERROR = re.compile(r"^(?:sbatch:\s*error:\s*)+", re.IGNORECASE)
_BATCH_FAILED = re.compile(r"^batch job submission failed:\s*", re.IGNORECASE)
# IPv4 (with a port), bracketed IPv6, and IPv6 with `::` (a bare "1:00:00" is a time limit).
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\[[0-9a-f:]+\](?::\d+)?|\b[0-9a-f]*::[0-9a-f:]*",
                      re.IGNORECASE)
# "on login0", "host cn3.cluster": a name with a digit or a dot after such a word is a host.
_HOST_CLAUSE = re.compile(r"\b(?:on|at|from|host)\s+(?=[A-Za-z_-]*[0-9.])[A-Za-z0-9_.-]+", re.IGNORECASE)
_MAX = 200


def client_reason(kind: FailureKind, reason: str) -> str:
    """The reason shown to the API's client for a JobSubmitFailed of `kind`."""
    if kind == FailureKind.UNAVAILABLE:
        return UNAVAILABLE
    if reason.startswith(SBATCH_REFUSED):
        line = scheduler_line(reason[len(SBATCH_REFUSED):])
        return "the scheduler refused the job" + (f": {line}" if line else "")
    return _redact(reason)


def client_why(failure: FailureKind, why: Why) -> Why:
    """A job's Why as the client sees it: a failed submission's reason made safe."""
    if not failure or why.kind is not WhyKind.SUBMIT_FAILED:
        return why
    return Why(WhyKind.SUBMIT_FAILED, client_reason(failure, why.text))


def scheduler_line(complaint: str) -> str:
    """The first line of sbatch's complaint that says what is wrong, without hosts or addresses."""
    for part in complaint.split("; "):
        if not _SCHEDULER_ERROR.match(part):
            continue  # sudo's and ssh's lines name hosts and accounts; sbatch's name the problem
        text = _BATCH_FAILED.sub("", _SCHEDULER_ERROR.sub("", part.strip()))
        if text:
            return _redact(text)
    return ""


def _redact(text: str) -> str:
    text = _ADDRESS.sub("<address>", text)
    return _HOST_CLAUSE.sub(lambda m: m.group(0).split()[0] + " a cluster host", text)[:_MAX]
