"""FakeInventory: scheduler-adapter's ClusterInventory for unit tests;
tests/contract/test_cluster_inventory.py holds it to SinfoInventory on a real login node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from scheduler_adapter.errors import SchedulerUnavailable


class FakeInventory:
    """A cluster with these partitions (-> gres) and these programs; `down` = no login node answers,
    `slurm_down` = sinfo fails while the node answers. Every question is counted in `asked`."""

    def __init__(self, partitions: Mapping[str, Sequence[str]], programs: Iterable[str]) -> None:
        self.partitions_ = {p: sorted(g) for p, g in partitions.items()}
        self.programs = set(programs)
        self.down = False
        self.slurm_down = False
        self.asked: list[str] = []

    async def partitions(self) -> dict[str, list[str]]:
        self.asked.append("partitions")
        if self.down or self.slurm_down:
            raise SchedulerUnavailable("sinfo: Unable to contact slurm controller")
        return {p: list(g) for p, g in sorted(self.partitions_.items())}

    async def commands(self, names: Sequence[str]) -> dict[str, bool]:
        self.asked.append("commands")
        if self.down:
            raise SchedulerUnavailable("no command node answered")
        return {name: name in self.programs for name in names}
