"""What the API's client reads about a failed submission: actionable, no internal hosts."""

from __future__ import annotations

import pytest

from bwvisu_common.job_facts import FailureKind, Why, WhyKind
from bwvisu_common.reasons import UNAVAILABLE, client_reason, client_why


@pytest.mark.parametrize(("kind", "reason", "shown"), [
    ("unavailable", "the cluster cannot be reached: no command node answered: login0 (10.200.0.10)",
     UNAVAILABLE),
    ("unavailable", "no scheduler answered within 30 s", UNAVAILABLE),
    ("rejected", "sbatch refused the job: sbatch: error: Batch job submission failed: "
                 "Invalid partition name specified",
     "the scheduler refused the job: Invalid partition name specified"),
    ("rejected", "sbatch refused the job: sbatch: error: invalid partition specified: gpu; "
                 "sbatch: error: Unable to allocate resources: Invalid partition name specified",
     "the scheduler refused the job: invalid partition specified: gpu"),
    ("rejected", "sbatch refused the job: sbatch: error: Requested time limit 1:00:00 too long",
     "the scheduler refused the job: Requested time limit 1:00:00 too long"),
    ("rejected", "sbatch refused the job: Sorry, user bwvisu may not run sbatch as alice on login0.",
     "the scheduler refused the job"),
    ("rejected", "sbatch refused the job: sbatch: error: no answer from slurmctld at 10.200.0.1:6817",
     "the scheduler refused the job: no answer from slurmctld at <address>"),
    ("rejected", "sbatch refused the job: sbatch: error: controller on ctl1.cluster.example is down",
     "the scheduler refused the job: controller on a cluster host is down"),
    ("rejected", "no such template: xpra", "no such template: xpra"),
    ("unknown-user", "no such user: carol", "no such user: carol"),
])
def test_client_reason(kind: str, reason: str, shown: str) -> None:
    assert client_reason(FailureKind(kind), reason) == shown


def test_only_a_failed_submissions_reason_is_made_safe() -> None:
    queued = Why(WhyKind.QUEUED, "12")
    assert client_why(FailureKind.NONE, queued) is queued
    refused = Why(WhyKind.PORTS_REFUSED, "second request")
    assert client_why(FailureKind.NONE, refused) is refused
    down = Why(WhyKind.SUBMIT_FAILED, "the cluster cannot be reached: login0 (10.200.0.10) down")
    assert client_why(FailureKind.UNAVAILABLE, down) == Why(WhyKind.SUBMIT_FAILED, UNAVAILABLE)
    rejected = Why(WhyKind.SUBMIT_FAILED, "sbatch refused the job: sbatch: error: bad qos on 10.0.0.1")
    assert client_why(FailureKind.REJECTED, rejected) == Why(
        WhyKind.SUBMIT_FAILED, "the scheduler refused the job: bad qos on <address>")
