"""What Slurm says, in our words: native job states, squeue lines, job tags, sbatch output. Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Lifecycle(enum.Enum):
    """Where a Slurm job is in bwvisu's lifecycle."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETING = "completing"
    FINISHED = "finished"
    # Slurm could not be asked or gave an answer we do not know: never read as finished.
    UNKNOWN = "unknown"


# The one table from Slurm's native job states (squeue %T / -O State) to our lifecycle.
STATE_MAP: dict[str, Lifecycle] = {
    "PENDING": Lifecycle.PENDING,
    "CONFIGURING": Lifecycle.PENDING,  # nodes allocated, still booting
    "REQUEUED": Lifecycle.PENDING,
    "REQUEUE_HOLD": Lifecycle.PENDING,
    "REQUEUE_FED": Lifecycle.PENDING,
    "RESV_DEL_HOLD": Lifecycle.PENDING,
    "RUNNING": Lifecycle.RUNNING,
    "SUSPENDED": Lifecycle.RUNNING,  # holds its nodes; may resume
    "STOPPED": Lifecycle.RUNNING,
    "RESIZING": Lifecycle.RUNNING,
    "SIGNALING": Lifecycle.RUNNING,
    "COMPLETING": Lifecycle.COMPLETING,
    "STAGE_OUT": Lifecycle.COMPLETING,
    "COMPLETED": Lifecycle.FINISHED,
    "CANCELLED": Lifecycle.FINISHED,
    "FAILED": Lifecycle.FINISHED,
    "TIMEOUT": Lifecycle.FINISHED,
    "NODE_FAIL": Lifecycle.FINISHED,
    "PREEMPTED": Lifecycle.FINISHED,
    "OUT_OF_MEMORY": Lifecycle.FINISHED,
    "BOOT_FAIL": Lifecycle.FINISHED,
    "DEADLINE": Lifecycle.FINISHED,
    "SPECIAL_EXIT": Lifecycle.FINISHED,
    "REVOKED": Lifecycle.FINISHED,
}


def lifecycle(slurm_state: str) -> Lifecycle:
    # squeue may append flags ("CANCELLED by 1001"); the first word is the state.
    word = slurm_state.split(" ", 1)[0].strip().upper()
    return STATE_MAP.get(word, Lifecycle.UNKNOWN)


# squeue -O fields, '|' after each; Name is last because other users' job names may hold '|'.
SQUEUE_FIELDS = ("JobID", "State", "Reason", "NodeList", "UserName", "exit_code", "Name")
SQUEUE_FORMAT = ",".join(f"{f}:|" for f in SQUEUE_FIELDS[:-1]) + f",{SQUEUE_FIELDS[-1]}:"


@dataclass(frozen=True, slots=True)
class SqueueEntry:
    """One job as squeue lists it."""

    slurm_id: str
    state: str
    reason: str
    nodelist: str
    user: str
    exit_code: int | None
    name: str

    @property
    def lifecycle(self) -> Lifecycle:
        return lifecycle(self.state)


def parse_squeue(text: str, tag_prefix: str | None = None) -> list[SqueueEntry]:
    """squeue's lines (SQUEUE_FORMAT) as entries; with `tag_prefix`, only jobs named with it."""
    entries: list[SqueueEntry] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 6)
        if len(fields) != 7:
            raise ValueError(f"unexpected squeue line: {line[:200]!r}")
        slurm_id, state, reason, nodelist, user, raw_exit, name = fields
        name = name.rstrip()
        if tag_prefix is not None and not name.startswith(tag_prefix):
            continue
        entries.append(SqueueEntry(
            slurm_id=slurm_id.strip(), state=state.strip(), reason=reason.strip(),
            nodelist=nodelist.strip(), user=user.strip(), exit_code=decode_exit(raw_exit), name=name,
        ))
    return entries


def decode_exit(raw: str) -> int | None:
    """Slurm's exit_code is a wait status: the code in the high byte, a signal in the low bits."""
    raw = raw.strip()
    if not raw.isdigit():
        return None
    status = int(raw)
    signal = status & 0x7F
    return 128 + signal if signal else status >> 8


def job_name(tag: str, job_id: str) -> str:
    """The Slurm job name that marks a job as ours: `<tag>-<job id>`."""
    return f"{tag}-{job_id}"


def tag_prefix(tag: str) -> str:
    return f"{tag}-"


def job_id_from_name(tag: str, name: str) -> str | None:
    prefix = tag_prefix(tag)
    if not name.startswith(prefix):
        return None
    job_id = name[len(prefix):]
    return job_id if job_id and all(c.isalnum() or c in "_-" for c in job_id) else None


def parse_sbatch_id(stdout: str) -> str:
    """`sbatch --parsable` prints `12345` or `12345;cluster`."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    slurm_id = first.split(";", 1)[0].strip()
    if not slurm_id.isdigit():
        raise ValueError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return slurm_id
