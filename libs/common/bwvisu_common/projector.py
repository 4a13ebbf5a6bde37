"""The projector: the job read model written back to etcd, for every other process to load.

It is LiveJobs's fold that also writes each batch to etcd, with the new stream sequence, in
one guarded transaction: several projectors (HA) never apply an event twice, a restarted one
resumes at the sequence etcd holds, and a wiped projection is rebuilt by replaying the stream.
Jobs finished longer ago than the retention time leave etcd too (LiveJobs.forget_finished).
"""

from __future__ import annotations

from bwvisu_common.live_jobs import LiveJobs, ProjectionMoved
from bwvisu_common.metrics import note_availability
from bwvisu_common.read_model import JobView


class Projector(LiveJobs):
    """LiveJobs that writes every batch to etcd: the read model other processes load."""

    async def rebuild(self) -> int:
        """Wipe the projection and replay the whole stream."""
        await self._state.wipe_projection()
        return await self.catch_up()

    async def _commit(self, changed: list[JobView], new_seq: int) -> None:
        if not await self._state.save_jobs(changed, new_seq, self._seq):
            raise ProjectionMoved()
        for job in changed:  # once per job across projectors: only the one whose write went in
            note_availability(self._jobs.get(job.job_id), job)

    async def _commit_forgetting(self, job_ids: list[str]) -> None:
        # Guarded by the sequence this projector read: jobs are removed from the view it knows.
        if not await self._state.forget_jobs(job_ids, self._seq):
            raise ProjectionMoved()
