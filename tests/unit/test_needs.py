"""An app's needs: the declaration, and the decision whether the cluster can run it."""

from __future__ import annotations

import msgspec
import pytest

from bwvisu_common.needs import (
    ClusterFacts,
    Fit,
    Needs,
    Verdict,
    commands_needed,
    gres_of,
    judge,
    needs_problem,
)

CLUSTER = ClusterFacts(partitions={"debug": [], "gpu": ["gpu", "gpu:a100"]},
                       commands={"xpra": True, "singularity": False, "apptainer": False})


@pytest.mark.parametrize("needs", [
    Needs(),
    Needs(commands=["singularity", "Xvfb", "jupyter-notebook", "python3.11", "g++"]),
    Needs(gres=["gpu", "gpu:a100", "mps"], partition="gpu"),
])
def test_a_sound_declaration_has_no_problem(needs: Needs) -> None:
    assert needs_problem(needs) is None


@pytest.mark.parametrize(("needs", "field", "words"), [
    (Needs(commands=["sing ularity"]), "commands[0]", "not a command name"),
    (Needs(commands=["xpra", "$(reboot)"]), "commands[1]", "not a command name"),
    (Needs(commands=["-v"]), "commands[0]", "not a command name"),
    (Needs(commands=["a/b"]), "commands[0]", "not a command name"),
    (Needs(commands=[""]), "commands[0]", "not a command name"),
    (Needs(commands=["x" * 65]), "commands[0]", "not a command name"),
    (Needs(commands=["xpra", "xpra"]), "commands[1]", "appears twice"),
    (Needs(commands=[f"c{i}" for i in range(17)]), "commands", "at most 16"),
    (Needs(gres=["gpu;rm"]), "gres[0]", "not a gres name"),
    (Needs(gres=["gpu:a100:2"]), "gres[0]", "not a gres name"),
    (Needs(partition="gpu partition"), "partition", "not a partition name"),
])
def test_a_bad_declaration_names_the_field(needs: Needs, field: str, words: str) -> None:
    problem = needs_problem(needs)
    assert problem is not None and problem[0] == field and words in problem[1], problem


def test_the_declaration_knows_only_its_own_fields() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `command`"):
        msgspec.json.decode(b'{"command": ["xpra"]}', type=Needs)
    with pytest.raises(msgspec.ValidationError, match="Expected `array`"):
        msgspec.json.decode(b'{"commands": "xpra"}', type=Needs)


def test_commands_to_look_for_are_every_bundles_once() -> None:
    assert commands_needed([Needs(commands=["xpra", "Xvfb"]), Needs(), Needs(commands=["xpra"])]) == [
        "Xvfb", "xpra"]


def test_an_app_that_needs_nothing_runs_even_when_nothing_could_be_checked() -> None:
    assert judge(Needs(), ClusterFacts()) == Verdict(Fit.RUNS)


def test_an_app_whose_needs_are_there_runs() -> None:
    assert judge(Needs(commands=["xpra"], gres=["gpu:a100"], partition="gpu"), CLUSTER).fit is Fit.RUNS


def test_a_missing_command_is_named() -> None:
    verdict = judge(Needs(commands=["xpra", "singularity"]), CLUSTER)
    assert verdict == Verdict(Fit.LACKS, "needs singularity, which this cluster lacks")
    assert not verdict.offered


def test_several_missing_things_are_all_named() -> None:
    verdict = judge(Needs(commands=["singularity", "apptainer"], gres=["gpu"], partition="debug"), CLUSTER)
    assert verdict.reason == ("needs singularity and apptainer, which this cluster lacks; "
                              "needs the Slurm resource gpu, which partition debug lacks")


def test_a_gres_is_looked_for_on_any_partition_unless_one_is_named() -> None:
    assert judge(Needs(gres=["gpu"]), CLUSTER).fit is Fit.RUNS
    assert judge(Needs(gres=["gpu:h100"]), CLUSTER) == Verdict(
        Fit.LACKS, "needs the Slurm resource gpu:h100, which this cluster lacks")


def test_a_missing_partition_is_named() -> None:
    assert judge(Needs(partition="viz", gres=["gpu"]), CLUSTER) == Verdict(
        Fit.LACKS, "needs partition viz, which this cluster lacks")


def test_what_could_not_be_checked_is_never_called_absent() -> None:
    unknown = ClusterFacts(slurm_error="sinfo: timed out", commands_error="no command node answered")
    verdict = judge(Needs(commands=["singularity"], gres=["gpu"], partition="gpu"), unknown)
    assert verdict == Verdict(Fit.UNCHECKED,
                              "could not check whether this cluster has partition gpu, gpu and singularity")
    assert verdict.offered


def test_a_command_nobody_looked_for_is_unchecked() -> None:
    verdict = judge(Needs(commands=["paraview"]), CLUSTER)
    assert verdict == Verdict(Fit.UNCHECKED, "could not check whether this cluster has paraview")


def test_what_is_known_missing_wins_over_what_could_not_be_checked() -> None:
    facts = ClusterFacts(partitions=None, commands={"singularity": False})
    verdict = judge(Needs(commands=["singularity"], gres=["gpu"]), facts)
    assert verdict == Verdict(Fit.LACKS, "needs singularity, which this cluster lacks")


@pytest.mark.parametrize(("field", "offered"), [
    ("(null)", []),
    ("gpu:2", ["gpu"]),
    ("gpu:a100:4(S:0-1)", ["gpu", "gpu:a100"]),
    ("gpu:a100:2(S:0,1),mps:200,shard:0", ["gpu", "gpu:a100", "mps"]),
    ("gpu:tesla:no_consume:2", ["gpu", "gpu:tesla"]),
    ("gpu:3090:2(S:0-1)", ["gpu", "gpu:3090"]),  # a type may be all digits
    ("gpu", ["gpu"]),
    ("", []),
])
def test_sinfos_gres_field_is_read_as_names_and_types(field: str, offered: list[str]) -> None:
    assert gres_of(field) == offered
