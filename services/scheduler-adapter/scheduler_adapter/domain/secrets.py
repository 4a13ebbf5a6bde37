"""A job's secrets: which to keep, for how long, which a retry reuses, which to forget. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView
from bwvisu_common.state_keys import secret_job, session_secret_key, token_key

# A token must outlive the queue wait and the run; JobEnded deletes it much earlier.
TOKEN_MARGIN = int(timedelta(days=7).total_seconds())


@dataclass(frozen=True)
class JobSecrets:
    """A job's keyhole token and session secret, as rendered into its script."""

    token: str
    session: str

    @classmethod
    def earlier(cls, token: bytes | None, session: bytes | None, fresh: JobSecrets) -> JobSecrets | None:
        """What an earlier attempt stored (its token tells that there was one), else None.

        A retry renders the same secrets: the first attempt may be queued under them. An attempt
        without ports stored no session secret; `fresh` supplies one."""
        if token is None:
            return None
        return cls(token.decode(), session.decode() if session is not None else fresh.session)


def token_ttl(variables: dict[str, str]) -> int:
    """Seconds: the job's runtime (minutes, if given) plus a week for the queue."""
    runtime = variables.get("runtime", "")
    minutes = int(runtime) if runtime.isdigit() else 0
    return minutes * 60 + TOKEN_MARGIN


def secrets_to_store(job_id: str, chosen: JobSecrets, has_ports: bool) -> dict[str, bytes]:
    """State-store name -> value of what must be kept before sbatch runs the job."""
    kept = {token_key(job_id): chosen.token.encode()}
    if has_ports:
        # Only a job with ports has an application to protect, and a Connect to make.
        kept[session_secret_key(job_id)] = chosen.session.encode()
    return kept


def secret_names(job_id: str) -> list[str]:
    """Every secret a job may have: all forgotten once it is over."""
    return [token_key(job_id), session_secret_key(job_id)]


def stale_secrets(views: Iterable[JobView], names: Iterable[str]) -> list[str]:
    """The stored secrets (by name) of finished jobs.

    Secrets of jobs the read model does not know yet are left alone: another replica may be
    submitting them right now (their lease ends them if not)."""
    finished = {v.job_id for v in views if v.state == JobState.FINISHED}
    return [n for n in names if secret_job(n) in finished]
