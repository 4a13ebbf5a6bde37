"""What Slurm says, in our words: native job states, squeue lines, job tags, sbatch output. Pure."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field

import msgspec


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
    found = STATE_MAP.get(slurm_state)  # the common case, a bare upper-case word: one look-up
    if found is not None:
        return found
    # squeue may append flags ("CANCELLED by 1001"); the first word is the state.
    word = slurm_state.split(" ", 1)[0].strip().upper()
    return STATE_MAP.get(word, Lifecycle.UNKNOWN)


# squeue -O fields, '|' after each. Name is last: a job name may hold '|' and even a newline, so a
# user can make squeue print lines of their choosing. Such lines either fail to parse (counted,
# skipped) or repeat a Slurm id squeue printed already (both copies are set aside as ambiguous),
# and the watcher matches a job by Slurm id, user and name together (see domain/watch.py).
SQUEUE_FIELDS = ("JobID", "State", "Reason", "NodeList", "UserName", "exit_code", "Name")
SQUEUE_FORMAT = ",".join(f"{f}:|" for f in SQUEUE_FIELDS[:-1]) + f",{SQUEUE_FIELDS[-1]}:"
# The same without the name: nothing in it is chosen by a user, so every line is Slurm's own.
SQUEUE_NAMELESS_FORMAT = ",".join(f"{f}:|" for f in SQUEUE_FIELDS[:-1])

# A msgspec struct, not a dataclass: a poll makes one per job, and a frozen dataclass is slow to build.
class SqueueEntry(msgspec.Struct, frozen=True, gc=False):
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


@dataclass(frozen=True, slots=True)
class SqueueAnswer:
    """One squeue answer: the tagged jobs, and what could not be trusted in it."""

    entries: list[SqueueEntry] = field(default_factory=list)
    # Lines that are no job record (e.g. the rest of a job name holding a newline).
    skipped: int = 0
    # Slurm ids printed more than once: one copy is a forgery, and which one cannot be told.
    ambiguous: frozenset[str] = frozenset()
    # A repr'd prefix of the first skipped line, for the log.
    sample: str = ""
    # Lines that were job records, ours or not.
    records: int = 0


def parse_squeue(text: str, tag_prefix: str | None = None) -> SqueueAnswer:
    """squeue's lines (SQUEUE_FORMAT) as entries; with `tag_prefix`, only jobs named with it."""
    entries: list[SqueueEntry] = []
    seen: set[str] = set()
    ambiguous: set[str] = set()
    bad: list[str] = []
    records = 0
    prefix = tag_prefix or ""
    for line in text.splitlines():
        fields = line.split("|", 6)
        slurm_id = fields[0].strip()
        # A record starts with a job id (`123`, or an array/het job's `123_4`, `123+1`).
        if len(fields) != 7 or not slurm_id[:1].isdigit():
            if line.strip():
                bad.append(line)
            continue
        records += 1
        if slurm_id in seen:
            ambiguous.add(slurm_id)
        seen.add(slurm_id)
        name = fields[6].rstrip()
        if not name.startswith(prefix):
            continue
        user = fields[4].strip()
        if not slurm_id.isdigit() or not user:
            bad.append(line)  # ours are never array jobs, and every job has a user
            continue
        entries.append(SqueueEntry(slurm_id, fields[1].strip(), fields[2].strip(), fields[3].strip(),
                                   user, decode_exit(fields[5]), name))
    if ambiguous:
        entries = [e for e in entries if e.slurm_id not in ambiguous]
    sample = repr(bad[0][:40]) if bad else ""
    return SqueueAnswer(entries, len(bad), frozenset(ambiguous), sample, records)


def parse_nameless(text: str) -> list[SqueueEntry]:
    """squeue's lines in SQUEUE_NAMELESS_FORMAT (no user-chosen text); the name is left empty."""
    entries: list[SqueueEntry] = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 6 or not fields[0].strip().isdigit():
            continue
        entries.append(SqueueEntry(
            slurm_id=fields[0].strip(), state=fields[1].strip(), reason=fields[2].strip(),
            nodelist=fields[3].strip(), user=fields[4].strip(), exit_code=decode_exit(fields[5]),
            name="",
        ))
    return entries


# Most jobs share a handful of exit statuses ("0", mostly): decode each once.
@functools.lru_cache(maxsize=1024)
def decode_exit(raw: str) -> int | None:
    """Slurm's exit_code is a wait status: the code in the high byte, a signal in the low bits."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()):  # "²" is a digit to str.isdigit, not to int()
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
