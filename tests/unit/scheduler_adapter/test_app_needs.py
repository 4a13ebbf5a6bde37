"""scheduler-adapter's look at the cluster for the apps' needs: what it asks a login node, how it
reads the answers, and what it says when it could not look."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bwvisu_common.needs import ClusterFacts
from scheduler_adapter.adapters.inventory import SinfoInventory
from scheduler_adapter.app_needs import NeedsChecker, site_needs
from scheduler_adapter.domain.inventory import SINFO_ARGV, parse_probe, parse_sinfo, probe_argv
from scheduler_adapter.errors import SchedulerUnavailable
from scheduler_adapter.ports import CommandResult
from tests.fakes.cluster_inventory import FakeInventory
from tests.fakes.command_runner import FakeCommandRunner, run_here

INTERVAL = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def write_bundle(directory: Path, name: str, needs: object | None = None, **rest: object) -> None:
    body: dict[str, object] = {"title": name, "template": name, **rest}
    if needs is not None:
        body["needs"] = needs
    (directory / f"{name}.app.json").write_text(json.dumps(body))


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    write_bundle(tmp_path, "container", {"commands": ["singularity"], "gres": ["gpu"]})
    write_bundle(tmp_path, "desktop", {"commands": ["xpra", "Xvfb"]})
    write_bundle(tmp_path, "plain")
    return tmp_path


def test_sinfo_lines_become_partitions_with_their_gres() -> None:
    out = "debug|(null)\ngpu|gpu:a100:2(S:0-1)\ngpu|gpu:h100:4(S:0)\nviz|(null)\n"
    assert parse_sinfo(out) == {"debug": [], "gpu": ["gpu", "gpu:a100", "gpu:h100"], "viz": []}
    assert SINFO_ARGV == ["sinfo", "--all", "--noheader", "--format=%R|%G"]


def test_sinfo_without_a_partition_is_no_answer() -> None:
    with pytest.raises(ValueError, match="no partition"):
        parse_sinfo("slurm_load_partitions: Unable to contact slurm controller\n")


def test_the_probe_takes_names_only_as_arguments() -> None:
    argv = probe_argv(["singularity", "Xvfb"])
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", "singularity", "Xvfb"]
    assert "singularity" not in argv[2]
    for bad in ("$(reboot)", "-v", "a b", "a/b"):
        with pytest.raises(ValueError):
            probe_argv([bad])


async def test_the_probe_finds_programs_and_not_builtins_or_strangers() -> None:
    """The probe script itself, run here: only an executable on PATH counts."""
    runner = FakeCommandRunner().on(["**"], run_here)
    found = await SinfoInventory(runner).commands(["sh", "cd", "no-such-program-x1"])
    assert found == {"sh": True, "cd": False, "no-such-program-x1": False}


def test_a_probe_that_did_not_answer_for_a_name_is_no_answer() -> None:
    assert parse_probe("found a\nmissing b\n", ["a", "b"]) == {"a": True, "b": False}
    with pytest.raises(ValueError, match="did not say whether it has b"):
        parse_probe("found a\n", ["a", "b"])


async def test_sinfo_failing_is_unavailable_with_its_words() -> None:
    runner = FakeCommandRunner().on(SINFO_ARGV, CommandResult(1, "", "sinfo: error: Unable to contact"))
    with pytest.raises(SchedulerUnavailable, match="Unable to contact"):
        await SinfoInventory(runner).partitions()


def test_site_needs_skips_a_broken_bundle(bundles: Path) -> None:
    write_bundle(bundles, "broken", {"commands": ["rm -rf"]})
    (bundles / "garbage.app.json").write_text("{")
    commands = sorted(c for n in site_needs(bundles) for c in n.commands)
    assert commands == ["Xvfb", "singularity", "xpra"]


async def test_one_look_says_what_the_cluster_has_of_what_the_bundles_need(bundles: Path) -> None:
    inventory = FakeInventory({"debug": []}, programs={"xpra", "Xvfb", "sh"})
    clock = Clock()
    checker = NeedsChecker(inventory, bundles, interval=INTERVAL, clock=clock)
    await checker.check()
    assert checker.facts() == ClusterFacts(
        partitions={"debug": []}, slurm_checked_at=clock.now,
        commands={"Xvfb": True, "singularity": False, "xpra": True}, commands_checked_at=clock.now,
        commands_source="login-node")


async def test_before_any_look_nothing_is_claimed(bundles: Path) -> None:
    checker = NeedsChecker(FakeInventory({}, ()), bundles, interval=INTERVAL)
    facts = checker.facts()
    assert facts.partitions is None and facts.commands is None
    assert facts.slurm_error and facts.commands_error


async def test_a_failed_look_keeps_a_recent_answer_then_drops_it(bundles: Path) -> None:
    inventory = FakeInventory({"debug": []}, programs={"xpra"})
    clock = Clock()
    checker = NeedsChecker(inventory, bundles, interval=INTERVAL, clock=clock)
    await checker.check()
    inventory.down = True
    clock.now += INTERVAL
    await checker.check()
    facts = checker.facts()
    assert facts.partitions == {"debug": []} and facts.commands is not None and facts.commands["xpra"]
    assert "Unable to contact" in facts.slurm_error and "no command node" in facts.commands_error
    clock.now += 3 * INTERVAL
    await checker.check()
    facts = checker.facts()
    assert facts.partitions is None and facts.commands is None, "an old answer is not passed on"
    inventory.down = False
    await checker.check()
    assert checker.facts().commands == {"Xvfb": False, "singularity": False, "xpra": True}


async def test_slurm_and_commands_fail_apart(bundles: Path) -> None:
    inventory = FakeInventory({"debug": []}, programs={"xpra"})
    inventory.slurm_down = True
    checker = NeedsChecker(inventory, bundles, interval=INTERVAL)
    await checker.check()
    facts = checker.facts()
    assert facts.partitions is None and "slurm controller" in facts.slurm_error
    assert facts.commands == {"Xvfb": False, "singularity": False, "xpra": True} and not facts.commands_error


async def test_the_sites_list_is_believed_and_no_login_node_asked(bundles: Path) -> None:
    inventory = FakeInventory({"debug": ["gpu"]}, programs={"singularity"})
    checker = NeedsChecker(inventory, bundles, interval=INTERVAL, site_commands=["xpra", "paraview"])
    await checker.check()
    facts = checker.facts()
    assert inventory.asked == ["partitions"]
    assert facts.commands == {"Xvfb": False, "paraview": True, "singularity": False, "xpra": True}
    assert facts.commands_source == "site-list"


async def test_a_bundle_added_later_is_looked_for_at_the_next_look(bundles: Path) -> None:
    checker = NeedsChecker(FakeInventory({"debug": []}, {"paraview"}), bundles, interval=INTERVAL)
    await checker.check()
    assert checker.facts().commands is not None and "paraview" not in (checker.facts().commands or {})
    write_bundle(bundles, "paraview", {"commands": ["paraview"]})
    await checker.check()
    assert (checker.facts().commands or {}).get("paraview") is True


async def test_a_surprise_while_looking_is_could_not_check(bundles: Path) -> None:
    class Broken(FakeInventory):
        async def partitions(self) -> dict[str, list[str]]:
            raise RuntimeError("bug")

    checker = NeedsChecker(Broken({}, ()), bundles, interval=INTERVAL)
    await checker.check()
    assert checker.facts().partitions is None and "bug" in checker.facts().slurm_error


async def test_it_looks_every_interval_until_stopped(bundles: Path) -> None:
    stop = asyncio.Event()

    class Counting(FakeInventory):
        async def partitions(self) -> dict[str, list[str]]:
            if self.asked.count("partitions") == 2:
                stop.set()  # the third look
            return await super().partitions()

    inventory = Counting({"debug": []}, ())
    await asyncio.wait_for(NeedsChecker(inventory, bundles, interval=0.01).run(stop), 5)
    assert inventory.asked.count("partitions") == 3


async def test_a_question_right_after_start_waits_for_the_first_look(bundles: Path) -> None:
    checker = NeedsChecker(FakeInventory({"debug": []}, ()), bundles, interval=INTERVAL)
    answer = asyncio.create_task(checker.answer())
    await asyncio.sleep(0.01)
    assert not answer.done()
    await checker.check()
    assert (await asyncio.wait_for(answer, 1)).partitions == {"debug": []}
