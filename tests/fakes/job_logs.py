"""FakeJobLogs: runner-api's JobLogs for unit tests; tests/contract/test_cluster_queries.py holds it
to NatsJobLogs."""

from __future__ import annotations

from bwvisu_common.errors import DependencyUnavailable


class FakeJobLogs:
    """Log texts by (uid, job id); a job that wrote nothing yet reads as ""; `down` = nobody to ask."""

    def __init__(self) -> None:
        self.texts: dict[tuple[str, str], str] = {}
        self.down = False

    def write(self, uid: str, job_id: str, text: str) -> None:
        self.texts[(uid, job_id)] = text

    async def tail(self, uid: str, job_id: str, lines: int) -> str:
        if self.down:
            raise DependencyUnavailable("no command node answers")
        kept = self.texts.get((uid, job_id), "").splitlines(keepends=True)[-lines:]
        return "".join(kept)
