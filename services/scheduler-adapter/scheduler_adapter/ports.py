"""The capabilities scheduler-adapter needs: running commands on a command node, and a scheduler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from scheduler_adapter.domain.slurm import SqueueEntry


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

        Raises SchedulerUnavailable when no node answers (nothing ran). If the
        connection dies after the command was sent, an idempotent command is run again
        on the next node; otherwise CommandOutcomeUnknown is raised.
        """
        ...


class Scheduler(Protocol):
    """Slurm as bwvisu uses it: submit, look up, poll, cancel, and ask about users."""

    async def submit(self, uid: str, script: str, job_id: str) -> Submitted:
        """Queue the script as `uid`; raises SubmitRejected, UnknownUser or SchedulerUnavailable."""
        ...

    async def find(self, job_id: str) -> str | None:
        """The Slurm id of the job tagged with our job id, if Slurm knows one."""
        ...

    async def poll(self) -> list[SqueueEntry]:
        """Every job tagged as bwvisu's, in ONE squeue call; raises SchedulerUnavailable."""
        ...

    async def cancel(self, uid: str, slurm_id: str) -> None:
        """Cancel a job as its user; a job that already ended is no error."""
        ...

    async def read_log(self, uid: str, path: str, lines: int) -> str:
        """The last `lines` lines of a file, read as `uid` ("" while it does not exist)."""
        ...

    async def user_exists(self, uid: str) -> bool:
        """Whether the cluster knows the user; raises SchedulerUnavailable."""
        ...


class Templates(Protocol):
    """Where batch-script templates are kept."""

    def load(self, name: str) -> str | None:
        """The template's text, or None if there is no such template."""
        ...
