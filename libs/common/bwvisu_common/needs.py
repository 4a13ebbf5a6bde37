"""What an app needs on the compute nodes, what the cluster has, and whether the app can run there. Pure.

An app bundle declares its needs (`"needs": {"commands": [...], "gres": [...], "partition": ...}`);
scheduler-adapter finds out what the cluster has of them (ClusterFacts); the portal judges each
app with `judge` and offers only what can run. Something that could not be checked is never
claimed absent: the app stays offered, with "could not check".
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

# Names reach a command line on a login node (as arguments, never as shell text); still, only
# these characters, and never a leading '-' that a program could read as an option.
COMMAND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
# A Slurm generic resource: its name, optionally with a type (`gpu`, `gpu:a100`).
GRES_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}(:[A-Za-z0-9][A-Za-z0-9_.-]{0,31})?")
PARTITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_NEEDS = 16


class Needs(msgspec.Struct, frozen=True, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    """What an app needs on the compute nodes (a bundle's `needs`)."""

    commands: list[str] = []  # programs on the job's PATH, e.g. "singularity"
    gres: list[str] = []  # Slurm generic resources on some node, e.g. "gpu" or "gpu:a100"
    partition: str = ""  # the partition the app runs in ("" = any); gres are looked for there

    @property
    def any(self) -> bool:
        return bool(self.commands or self.gres or self.partition)


def needs_problem(needs: Needs) -> tuple[str, str] | None:
    """(field, problem) for the first thing wrong with a declaration, None if it is sound."""
    for field, names, pattern, what in (
        ("commands", needs.commands, COMMAND_NAME, "a command name: letters, digits, '.', '_', '+', '-'"),
        ("gres", needs.gres, GRES_NAME, "a gres name like 'gpu' or 'gpu:a100'"),
    ):
        if len(names) > MAX_NEEDS:
            return field, f"at most {MAX_NEEDS} entries"
        for i, name in enumerate(names):
            if not pattern.fullmatch(name):
                return f"{field}[{i}]", f"{name!r} is not {what}"
            if name in names[:i]:
                return f"{field}[{i}]", f"{name!r} appears twice"
    if needs.partition and not PARTITION_NAME.fullmatch(needs.partition):
        return "partition", f"{needs.partition!r} is not a partition name: letters, digits, '.', '_', '-'"
    return None


def commands_needed(all_needs: Iterable[Needs]) -> list[str]:
    """Every command any of these needs, once each, sorted: what to look for on the cluster."""
    return sorted({name for needs in all_needs for name in needs.commands})


class ClusterFacts(msgspec.Struct, frozen=True, kw_only=True, rename="kebab"):
    """What the cluster has of what the site's apps need, as last checked.

    None means "could not check" (the error says why), never "has none"."""

    # partition -> the gres its nodes have, with and without type ("gpu", "gpu:a100")
    partitions: dict[str, list[str]] | None = None
    slurm_error: str = ""
    slurm_checked_at: float = 0.0  # unix time
    # command -> found; a command not in here was not looked for
    commands: dict[str, bool] | None = None
    commands_error: str = ""
    commands_checked_at: float = 0.0
    # where commands were looked for: "login-node" (on a login node, see README) or "site-list"
    # (the site's `app-needs.compute-node-commands`)
    commands_source: str = ""


class Fit(enum.Enum):
    RUNS = "runs"  # everything it needs is there
    LACKS = "lacks"  # the cluster is known to lack something: not offered
    UNCHECKED = "unchecked"  # something could not be checked: offered, with a note


@dataclass(frozen=True)
class Verdict:
    fit: Fit
    reason: str = ""  # why not (LACKS) or what could not be checked (UNCHECKED); "" when it runs

    @property
    def offered(self) -> bool:
        return self.fit is not Fit.LACKS


RUNS = Verdict(Fit.RUNS)


def judge(needs: Needs, facts: ClusterFacts) -> Verdict:
    """Whether an app with these needs can run on a cluster with these facts, and why not."""
    lacking: list[str] = []
    unchecked: list[str] = []
    _judge_slurm(needs, facts.partitions, lacking, unchecked)
    missing = []
    for name in needs.commands:
        found = None if facts.commands is None else facts.commands.get(name)
        if found is None:
            unchecked.append(name)
        elif not found:
            missing.append(name)
    if missing:
        lacking.insert(0, f"needs {_and(missing)}, which this cluster lacks")
    if lacking:
        return Verdict(Fit.LACKS, "; ".join(lacking))
    if unchecked:
        return Verdict(Fit.UNCHECKED, f"could not check whether this cluster has {_and(unchecked)}")
    return RUNS


def _judge_slurm(needs: Needs, partitions: dict[str, list[str]] | None,
                 lacking: list[str], unchecked: list[str]) -> None:
    if partitions is None:
        unchecked += ([f"partition {needs.partition}"] if needs.partition else []) + needs.gres
        return
    if needs.partition and needs.partition not in partitions:
        lacking.append(f"needs partition {needs.partition}, which this cluster lacks")
        return
    if needs.partition:
        have, where = set(partitions[needs.partition]), f"partition {needs.partition}"
    else:
        have, where = {g for gres in partitions.values() for g in gres}, "this cluster"
    absent = [g for g in needs.gres if g not in have]
    if absent:
        lacking.append(f"needs the Slurm resource {_and(absent)}, which {where} lacks")


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


_GRES_SPLIT = re.compile(r",(?![^(]*\))")  # commas outside "(S:0,1)"


def gres_of(field: str) -> list[str]:
    """What a node's gres (sinfo's `%G`, e.g. `gpu:a100:2(S:0-1),mps:100`) offers: names, and
    name:type where a type is given. `(null)` and counts of 0 offer nothing."""
    offered: list[str] = []
    for item in _GRES_SPLIT.split(field.strip()):
        parts = item.split("(", 1)[0].strip().split(":")
        name = parts[0]
        if not name or name == "null" or not GRES_NAME.fullmatch(name):
            continue
        if parts[-1].isdigit() and int(parts[-1]) == 0:
            continue
        offered.append(name)
        # name:type:count, or name:count; a type may be all digits (gpu:3090:2).
        if len(parts) >= 3 or (len(parts) == 2 and not parts[1].isdigit()):
            offered.append(f"{name}:{parts[1]}")
    return offered
