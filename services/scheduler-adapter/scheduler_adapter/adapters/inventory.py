"""SinfoInventory: partitions and gres from `sinfo`, commands from `command -v`, on a login node."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler_adapter.domain.inventory import SINFO_ARGV, parse_probe, parse_sinfo, probe_argv
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.ports import CommandResult, CommandRunner


def _said(result: CommandResult) -> str:
    text = " ".join((result.stderr or result.stdout).split())
    return text[:300] or f"exit status {result.exit_status}"


class SinfoInventory:
    """The ClusterInventory port through a CommandRunner (a login node, as bwvisu's own account)."""

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner

    async def partitions(self) -> dict[str, list[str]]:
        result = await self._runner.run(SINFO_ARGV)
        if result.exit_status != 0:
            raise SchedulerUnavailable(f"sinfo failed on {result.node or 'a login node'}: {_said(result)}")
        try:
            return parse_sinfo(result.stdout)
        except ValueError as exc:
            raise SchedulerUnavailable(str(exc)) from exc

    async def commands(self, names: Sequence[str]) -> dict[str, bool]:
        if not names:
            return {}
        result = await self._runner.run(probe_argv(names))
        try:
            if result.exit_status != 0:
                raise ValueError(f"looking for commands failed: {_said(result)}")
            return parse_probe(result.stdout, names)
        except ValueError as exc:
            raise SchedulerUnavailable(f"{exc} (on {result.node or 'a login node'})") from exc
