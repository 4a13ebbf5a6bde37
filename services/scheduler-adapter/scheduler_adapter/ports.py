"""The capabilities scheduler-adapter needs: running commands on a command node, and a scheduler.

Templates, like the event and state stores, is a shared port: bwvisu_common.ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from scheduler_adapter.domain.slurm import SqueueAnswer, SqueueEntry
from scheduler_adapter.domain.users import Identity


@dataclass(frozen=True)
class CommandResult:
    """What a command printed and how it exited, and which node ran it."""

    exit_status: int
    stdout: str
    stderr: str
    node: str = ""


@dataclass(frozen=True)
class Submitted:
    slurm_id: str
    node: str = ""


class CommandRunner(Protocol):
    """Runs an argv (never a shell string) on some command node."""

    async def run(
        self, argv: Sequence[str], *, input: str | None = None, idempotent: bool = True
    ) -> CommandResult:
        """Run argv with optional stdin on the first command node that answers.

        A node that does not start the command within a short deadline counts as not
        answering. Raises SchedulerUnavailable when no node answers (nothing ran). If the
        connection dies after the command was sent, an idempotent command is run again
        on the next node; otherwise CommandOutcomeUnknown is raised.
        """
        ...


class Scheduler(Protocol):
    """Slurm as bwvisu uses it: submit, look up, poll, cancel, and ask about users."""

    async def submit(self, uid: str, script: str, job_id: str) -> Submitted:
        """Queue the script as `uid`; raises SubmitRejected, UnknownUser or SchedulerUnavailable.

        When a node took the script but gave no answer, the job tagged with `job_id` is adopted if
        Slurm has it, and the script goes to the next node only once Slurm said it has none;
        CommandOutcomeUnknown when Slurm could not say."""
        ...

    async def find(self, job_id: str, uid: str) -> str | None:
        """The Slurm id of `uid`'s job tagged with our job id, if Slurm knows one."""
        ...

    async def confirm(self, slurm_id: str, uid: str, job_id: str) -> bool:
        """Whether Slurm job `slurm_id` is `uid`'s and tagged with our job id (Slurm's filters say so)."""
        ...

    async def poll(self) -> SqueueAnswer:
        """Every job tagged as bwvisu's, in ONE squeue call; raises SchedulerUnavailable."""
        ...

    async def examine(self, slurm_ids: Sequence[str]) -> list[SqueueEntry]:
        """These Slurm jobs as squeue lists them, without names (nothing a user chose); may be fewer."""
        ...

    async def cancel(self, uid: str, slurm_id: str) -> None:
        """Cancel a job as its user; a job that already ended is no error."""
        ...

    async def time_limit(self, slurm_id: str) -> int | None:
        """Slurm's time limit of the job in minutes, None for none; SchedulerError if Slurm has no
        such job, SchedulerUnavailable if it cannot be asked."""
        ...

    async def set_time_limit(self, slurm_id: str, minutes: int) -> None:
        """Set the job's time limit (an operator's right: bwvisu's own sudo rule for scontrol);
        SchedulerError with Slurm's or sudo's words when refused."""
        ...

    async def read_log(self, uid: str, path: str, lines: int) -> str:
        """The last `lines` lines of a file, read as `uid` ("" while it does not exist)."""
        ...

    async def identify(self, uid: str) -> Identity | None:
        """The user's uid and groups on the cluster, None if there is no such user."""
        ...



class ClusterInventory(Protocol):
    """What the cluster offers the apps: partitions with their gres, and commands on PATH."""

    async def partitions(self) -> dict[str, list[str]]:
        """Partition -> the gres its nodes offer ("gpu", "gpu:a100"); SchedulerError if Slurm cannot say."""
        ...

    async def commands(self, names: Sequence[str]) -> dict[str, bool]:
        """Each name -> whether a program of that name is found; SchedulerError if nobody can say."""
        ...
