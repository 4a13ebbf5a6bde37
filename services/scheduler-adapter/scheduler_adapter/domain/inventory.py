"""What to ask a login node about the cluster's partitions, gres and commands, and what its answers say. Pure.

Partitions and gres come from Slurm (`sinfo`), which knows every node: that answer is the compute
nodes' own. Commands are looked for with `command -v` on a login node: a job asking `srun` on a
compute node would cost a job and wait in the queue for as long as the cluster is busy. On most
sites login and compute nodes share their software (one image, or a shared /usr/local or
/opt); a site where they differ names its compute nodes' commands in
`app-needs.compute-node-commands` instead, and no login node is asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from bwvisu_common.needs import COMMAND_NAME, PARTITION_NAME, gres_of

# One line per (partition, gres) group of nodes; `%R` is the partition's bare name (no '*').
# --all: hidden partitions and those closed to bwvisu's own group still exist for the users they are for.
SINFO_ARGV = ["sinfo", "--all", "--noheader", "--format=%R|%G"]

# A fixed script; the names are its arguments, never part of it. Only an executable file found
# on PATH counts (`command -v` also names shell builtins, functions and aliases).
_PROBE = ('for c do p=$(command -v -- "$c" 2>/dev/null); '
          'case $p in /*) echo "found $c";; *) echo "missing $c";; esac; done')


def probe_argv(names: Sequence[str]) -> list[str]:
    """The command that says for each name whether it is found on PATH; ValueError for a bad name."""
    for name in names:
        if not COMMAND_NAME.fullmatch(name):
            raise ValueError(f"not a command name: {name!r}")
    return ["sh", "-c", _PROBE, "sh", *names]


def parse_probe(stdout: str, names: Sequence[str]) -> dict[str, bool]:
    """Each name -> found, from the probe's output; ValueError if it did not answer for every name."""
    found: dict[str, bool] = {}
    for line in stdout.splitlines():
        word, _, name = line.strip().partition(" ")
        if name in names and word in ("found", "missing"):
            found[name] = word == "found"
    unanswered = [n for n in names if n not in found]
    if unanswered:
        raise ValueError(f"the login node did not say whether it has {', '.join(unanswered)}")
    return found


def parse_sinfo(stdout: str) -> dict[str, list[str]]:
    """Partition -> the gres its nodes offer, from SINFO_ARGV's output; ValueError for no partition."""
    partitions: dict[str, set[str]] = {}
    for line in stdout.splitlines():
        name, sep, gres = line.strip().partition("|")
        if not sep or not PARTITION_NAME.fullmatch(name):
            continue
        partitions.setdefault(name, set()).update(gres_of(gres))
    if not partitions:
        raise ValueError("sinfo listed no partition")
    return {name: sorted(gres) for name, gres in sorted(partitions.items())}
