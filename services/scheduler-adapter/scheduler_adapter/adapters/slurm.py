"""SlurmCli: sbatch, squeue, scancel and id through a CommandRunner, as the job's user via sudo."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from scheduler_adapter.adapters.scancel_batches import ScancelBatches
from scheduler_adapter.domain.extend import parse_time_limit
from scheduler_adapter.domain.slurm import (
    SQUEUE_FORMAT,
    SQUEUE_NAMELESS_FORMAT,
    SqueueAnswer,
    SqueueEntry,
    job_name,
    parse_nameless,
    parse_sbatch_id,
    parse_squeue,
    tag_prefix,
)
from scheduler_adapter.domain.slurmctld import Backoff, cancel_complaints, is_busy
from scheduler_adapter.domain.users import Identity, parse_id
from scheduler_adapter.errors import (
    CommandOutcomeUnknown,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRejected,
    UnknownUser,
)
from scheduler_adapter.ports import CommandResult, CommandRunner, Submitted

log = logging.getLogger(__name__)

_UNKNOWN_USER = ("unknown user", "no such user", "invalid user")


def _sudo(uid: str, *argv: str) -> list[str]:
    # -n: never prompt; a missing sudo rule is an error, not a hang.
    return ["sudo", "-n", "-u", uid, *argv]


# sbatch's umask becomes the job's: slurmstepd creates the --output file with it before the
# script's first line runs. 077 keeps a job's log its user's alone (sudo keeps the stricter of
# this and its own). A constant, not built from input.
PRIVATE_UMASK = ["sh", "-c", 'umask 077 && exec "$@"', "sh"]


def _complaint(result: CommandResult) -> str:
    lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
    # sudo's audit-plugin noise comes after the line that matters.
    useful = [ln for ln in lines if "audit plugin" not in ln]
    return "; ".join(useful)[:500] or f"exit status {result.exit_status}"


def _is_unknown_user(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _UNKNOWN_USER)


class SlurmCli:
    """Slurm through its command-line tools on a command node; jobs tagged by their job name."""

    def __init__(self, runner: CommandRunner, tag: str = "bwvisu", *,
                 lookup_attempts: int = 3, lookup_delay: float = 1.0, resubmits: int = 0,
                 cancel_window: float = 0.05, cancel_batch: int = 200,
                 backoff: Backoff | None = None) -> None:
        self._runner = runner
        # One pause for every command to slurmctld: a busy controller gets quiet, not a storm.
        self._backoff = backoff if backoff is not None else Backoff()
        self._cancels = ScancelBatches(self._scancel, window=cancel_window, most=cancel_batch)
        self._tag = tag
        self._lookup_attempts = lookup_attempts
        self._lookup_delay = lookup_delay
        # New sbatch calls after one whose outcome is unknown, each only once Slurm has no such job.
        # Off by default: an sbatch still retrying against a busy slurmctld may arrive after the
        # lookups, and a second Slurm job would run the user's script twice.
        self._resubmits = resubmits

    async def submit(self, uid: str, script: str, job_id: str) -> Submitted:
        sbatch = _sudo(uid, "sbatch", "--parsable", f"--job-name={job_name(self._tag, job_id)}")
        argv = [*PRIVATE_UMASK, *sbatch]
        unknown: CommandOutcomeUnknown | None = None
        for _ in range(1 + self._resubmits):
            try:
                # The script travels on stdin: it is never written to a file by us.
                result = await self._slurm(argv, input=script, idempotent=False)
                if result.exit_status != 0 and is_busy(_complaint(result)):
                    # slurmctld may have queued the job before the answer timed out.
                    raise CommandOutcomeUnknown(f"sbatch on {result.node or '?'}: {_complaint(result)}")
            except CommandOutcomeUnknown as exc:
                # The node that had the script is marked down: a lookup, and a new sbatch if
                # Slurm clearly has no such job, go to the next node.
                log.warning("job %s: %s; looking for the tagged job before submitting again", job_id, exc)
                unknown = exc
                found = await self._resolve_unknown(job_id, uid, exc)
                if found is not None:
                    return found
                continue
            return self._submitted(uid, result)
        raise CommandOutcomeUnknown(f"{unknown}; no tagged job found, and no sbatch answered")

    @staticmethod
    def _submitted(uid: str, result: CommandResult) -> Submitted:
        if result.exit_status != 0:
            complaint = _complaint(result)
            if _is_unknown_user(complaint):
                raise UnknownUser(f"no such user on the cluster: {uid}")
            raise SubmitRejected(complaint)
        try:
            return Submitted(parse_sbatch_id(result.stdout), result.node)
        except ValueError as exc:
            raise SubmitRejected(str(exc)) from exc

    async def _resolve_unknown(self, job_id: str, uid: str, cause: CommandOutcomeUnknown) -> Submitted | None:
        """The tagged job if Slurm has it; None once Slurm answered (every time) that it has none.

        Raises CommandOutcomeUnknown when Slurm could not be asked: submitting again then could
        make a second job."""
        answered = False
        for attempt in range(self._lookup_attempts):
            if attempt:
                # An sbatch still on its way to slurmctld shows up a moment later.
                await asyncio.sleep(self._lookup_delay)
            try:
                slurm_id = await self.find(job_id, uid)
            except SchedulerUnavailable:
                continue
            if slurm_id is not None:
                log.info("job %s: adopting Slurm job %s, found by its tag", job_id, slurm_id)
                return Submitted(slurm_id)
            answered = True
        if not answered:
            raise CommandOutcomeUnknown(f"{cause}; Slurm could not be asked for the tagged job")
        return None

    async def find(self, job_id: str, uid: str) -> str | None:
        # Slurm filters by exact name and user; only ids are printed, so no name can forge one.
        argv = ["squeue", "--noheader", "--all", "--states=all", f"--name={job_name(self._tag, job_id)}",
                f"--users={uid}", "--format=%i"]
        result = await self._slurm(argv)
        if result.exit_status != 0:
            raise SchedulerUnavailable(f"squeue failed: {_complaint(result)}")
        ids = [line.strip() for line in result.stdout.splitlines() if line.strip().isdigit()]
        return ids[0] if ids else None

    async def confirm(self, slurm_id: str, uid: str, job_id: str) -> bool:
        argv = ["squeue", "--noheader", "--all", "--states=all", f"--jobs={slurm_id}",
                f"--name={job_name(self._tag, job_id)}", f"--users={uid}", "--format=%i"]
        result = await self._slurm(argv)
        if result.exit_status != 0:
            if "invalid job id" in _complaint(result).lower():
                return False  # gone from Slurm: nothing to confirm
            raise SchedulerUnavailable(f"squeue failed: {_complaint(result)}")
        return slurm_id in (line.strip() for line in result.stdout.splitlines())

    async def poll(self) -> SqueueAnswer:
        # One call for every job: --all covers hidden partitions, --states=all keeps just-finished
        # jobs (with their final state and exit code) for Slurm's MinJobAge.
        argv = ["squeue", "--noheader", "--all", "--states=all", f"--Format={SQUEUE_FORMAT}"]
        result = await self._slurm(argv)
        if result.exit_status != 0:
            raise SchedulerUnavailable(f"squeue failed: {_complaint(result)}")
        answer = parse_squeue(result.stdout, tag_prefix(self._tag))
        if answer.skipped and not answer.records:
            # Not one job record: an error message on stdout, never an empty queue.
            raise SchedulerUnavailable(f"squeue answered something unreadable: {answer.sample}")
        return answer

    async def examine(self, slurm_ids: Sequence[str]) -> list[SqueueEntry]:
        if not slurm_ids:
            return []
        argv = ["squeue", "--noheader", "--all", "--states=all", f"--jobs={','.join(slurm_ids)}",
                f"--Format={SQUEUE_NAMELESS_FORMAT}"]
        result = await self._slurm(argv)
        if result.exit_status != 0 and "invalid job id" not in _complaint(result).lower():
            raise SchedulerUnavailable(f"squeue failed: {_complaint(result)}")
        return parse_nameless(result.stdout)

    async def cancel(self, uid: str, slurm_id: str) -> None:
        # Cancels of one user that come together (a workshop's end) share one scancel.
        await self._cancels.cancel(uid, slurm_id)

    async def _scancel(self, uid: str, slurm_ids: Sequence[str]) -> dict[str, BaseException | None]:
        result = await self._slurm(_sudo(uid, "scancel", *slurm_ids))
        if result.exit_status == 0:
            return dict.fromkeys(slurm_ids, None)
        said = result.stderr or result.stdout or f"exit status {result.exit_status}"
        outcome: dict[str, BaseException | None] = {}
        for slurm_id, complaint in cancel_complaints(said, slurm_ids).items():
            if complaint is None:
                outcome[slurm_id] = None
            elif is_busy(complaint):
                outcome[slurm_id] = SchedulerUnavailable(f"scancel {slurm_id} as {uid}: {complaint}")
            else:
                outcome[slurm_id] = SchedulerError(f"scancel {slurm_id} as {uid} failed: {complaint}")
        return outcome

    async def _slurm(self, argv: Sequence[str], *, input: str | None = None,
                     idempotent: bool = True) -> CommandResult:
        """Run a command that asks slurmctld, after any pause a busy slurmctld asked for."""
        pause = self._backoff.pause(time.monotonic())
        if pause > 0:
            await asyncio.sleep(pause)
        result = await self._runner.run(argv, input=input, idempotent=idempotent)
        if result.exit_status != 0 and is_busy(_complaint(result)):
            self._backoff.busy(time.monotonic())
            log.warning("slurmctld is busy (%s); pausing its commands for %.1f s",
                        _complaint(result), self._backoff.delay)
        elif result.exit_status == 0:
            self._backoff.answered()
        return result

    async def close(self) -> None:
        """Stop cancels still being sent."""
        await self._cancels.close()

    async def time_limit(self, slurm_id: str) -> int | None:
        # Only the limit is printed: nothing a user chose (a job name) can stand in for it.
        argv = ["squeue", "--noheader", "--all", "--states=all", f"--jobs={slurm_id}", "--Format=TimeLimit"]
        result = await self._slurm(argv)
        complaint = _complaint(result)
        if result.exit_status != 0 and "invalid job id" not in complaint.lower():
            raise SchedulerUnavailable(f"squeue failed: {complaint}")
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        if result.exit_status != 0 or len(lines) != 1:
            raise SchedulerError(f"Slurm has no job {slurm_id}")
        try:
            return parse_time_limit(lines[0])
        except ValueError as exc:
            raise SchedulerError(f"squeue printed no time limit for job {slurm_id}: {exc}") from exc

    async def set_time_limit(self, slurm_id: str, minutes: int) -> None:
        # As root through the one sudo rule that allows exactly this command: raising a limit is an
        # operator's right in Slurm, which no job's user has. The limit is absolute, never `+N`, so
        # running it again (a redelivery, the next node after a lost answer) adds nothing.
        if not (slurm_id.isdigit() and minutes > 0):
            raise SchedulerError(f"refusing to set time limit {minutes!r} of Slurm job {slurm_id!r}")
        argv = ["sudo", "-n", "scontrol", "update", f"JobId={slurm_id}", f"TimeLimit={minutes}"]
        result = await self._slurm(argv)
        if result.exit_status == 0:
            return
        complaint = _complaint(result)
        if is_busy(complaint):
            raise SchedulerUnavailable(f"scontrol update of job {slurm_id}: {complaint}")
        if "password is required" in complaint or "not allowed" in complaint:
            complaint = f"{complaint} (the sudo rule for scontrol update is missing on the command node)"
        raise SchedulerError(f"scontrol update of job {slurm_id} failed: {complaint}")

    async def read_log(self, uid: str, path: str, lines: int) -> str:
        # As the user: bwvisu reads what the job's owner may read, nothing more.
        result = await self._runner.run(_sudo(uid, "tail", "-n", str(lines), "--", path))
        if result.exit_status == 0:
            return result.stdout
        complaint = _complaint(result)
        if "No such file" in complaint:
            return ""  # the job has not started writing yet
        raise SchedulerUnavailable(f"tail of {path} as {uid} failed: {complaint}")

    async def identify(self, uid: str) -> Identity | None:
        # Run without sudo: `id` reads the user database only. One call gives uid and groups.
        result = await self._runner.run(["id", "--", uid])
        if result.exit_status == 0:
            try:
                return parse_id(result.stdout)
            except ValueError as exc:
                raise SchedulerUnavailable(f"id {uid}: {exc}") from exc
        complaint = _complaint(result)
        if _is_unknown_user(complaint):
            return None
        raise SchedulerUnavailable(f"id {uid} failed: {complaint}")
