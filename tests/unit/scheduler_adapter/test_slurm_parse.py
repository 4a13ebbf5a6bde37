from __future__ import annotations

import pytest

from bwvisu_common.keyhole_client import expand_hostlist
from scheduler_adapter.domain.slurm import (
    SQUEUE_NAMELESS_FORMAT,
    STATE_MAP,
    Lifecycle,
    decode_exit,
    job_id_from_name,
    lifecycle,
    parse_nameless,
    parse_sbatch_id,
    parse_squeue,
)


@pytest.mark.parametrize(("text", "hosts"), [
    ("cn0", ["cn0"]),
    ("cn[0-3,7],gpu[01-02]", ["cn0", "cn1", "cn2", "cn3", "cn7", "gpu01", "gpu02"]),
    ("n[008-011]", ["n008", "n009", "n010", "n011"]),
    ("rack[1-2]-n[1,3]", ["rack1-n1", "rack1-n3", "rack2-n1", "rack2-n3"]),
    ("a,b[9-10]", ["a", "b9", "b10"]),
    ("", []),
])
def test_hostlists_expand(text: str, hosts: list[str]) -> None:
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize("bad", ["cn[0-", "cn0]", "cn[3-1]", "cn[a-b]"])
def test_bad_hostlists_are_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        expand_hostlist(bad)


def test_state_map_covers_slurms_states_and_unknown_is_explicit() -> None:
    for state in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "COMPLETED", "CANCELLED", "FAILED",
                  "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                  "SUSPENDED", "REQUEUED"):
        assert state in STATE_MAP
    assert lifecycle("CANCELLED by 1001") is Lifecycle.FINISHED
    assert lifecycle("SOMETHING_NEW") is Lifecycle.UNKNOWN
    assert lifecycle("") is Lifecycle.UNKNOWN


def test_squeue_lines_parse_and_foreign_jobs_are_dropped() -> None:
    text = (
        "1|FAILED|NonZeroExitCode|cn0|alice|768|bwvisu-aaa\n"
        "18|PENDING|Resources||bob|0|x|y z\n"
        "2|RUNNING|None|cn[0-1]|bob|0|bwvisu-bbb\n"
    )
    entries = parse_squeue(text, "bwvisu-").entries
    assert [(e.slurm_id, e.lifecycle, e.exit_code, e.name) for e in entries] == [
        ("1", Lifecycle.FINISHED, 3, "bwvisu-aaa"), ("2", Lifecycle.RUNNING, 0, "bwvisu-bbb")]
    assert len(parse_squeue(text).entries) == 3
    assert parse_squeue(text).entries[1].name == "x|y z"


def test_garbage_squeue_output_is_skipped_and_counted_not_a_job() -> None:
    answer = parse_squeue("slurm_load_jobs error: Unable to contact slurm controller\n")
    assert answer.entries == [] and answer.skipped == 1 and answer.records == 0
    assert answer.sample.startswith("'slurm_load_jobs")


def test_a_name_with_a_newline_cannot_forge_a_job_of_another_user() -> None:
    # alice names her job "x\n<bob's Slurm id>|COMPLETED|...|bob|...|bwvisu-<bob's job>".
    text = (
        "7|RUNNING|None|cn0|bob|0|bwvisu-bobsjob\n"
        "8|RUNNING|None|cn0|alice|0|x\n"
        "7|COMPLETED|None|cn0|bob|0|bwvisu-bobsjob\n"
        "9|RUNNING|None|cn0|carol|0|bwvisu-ccc\n"
    )
    answer = parse_squeue(text, "bwvisu-")
    # Which of the two lines for 7 is Slurm's cannot be told: neither is believed.
    assert answer.ambiguous == {"7"}
    assert [e.slurm_id for e in answer.entries] == ["9"]
    assert answer.records == 4 and answer.skipped == 0


def test_lines_that_are_no_record_are_skipped_and_the_rest_still_parse() -> None:
    text = (
        "8|RUNNING|None|cn0|alice|0|first line of a name\n"
        "second line of it\n"
        "COMPLETED|None|cn0|bob|0|bwvisu-bbb|missing id\n"
        "|RUNNING|None|cn0|bob|0|bwvisu-empty-id\n"
        "12_3|RUNNING|None|cn0|bob|0|bwvisu-array\n"
        "13|RUNNING|None|cn0||0|bwvisu-no-user\n"
        "\n"
        "9|RUNNING|None|cn0|bob|0|bwvisu-bbb\n"
    )
    answer = parse_squeue(text, "bwvisu-")
    assert [e.slurm_id for e in answer.entries] == ["9"]
    assert answer.skipped == 5
    assert answer.sample == repr("second line of it")


def test_names_holding_the_separator_stay_whole() -> None:
    [entry] = parse_squeue("5|RUNNING|None|cn0|bob|0|bwvisu-a|b|c||\n", "bwvisu-").entries
    assert entry.name == "bwvisu-a|b|c||" and entry.user == "bob"


def test_the_name_free_format_has_nothing_a_user_chose() -> None:
    assert "Name" not in SQUEUE_NAMELESS_FORMAT.replace("UserName", "")
    [entry] = parse_nameless("7|COMPLETING|None|cn0|bob|256|\nnonsense\n")
    assert (entry.slurm_id, entry.user, entry.exit_code, entry.name) == ("7", "bob", 1, "")


def test_exit_codes_are_wait_statuses() -> None:
    assert decode_exit("0") == 0
    assert decode_exit("768") == 3
    assert decode_exit("15") == 128 + 15
    assert decode_exit("") is None


def test_tags_and_sbatch_ids() -> None:
    assert job_id_from_name("bwvisu", "bwvisu-0123abcd") == "0123abcd"
    assert job_id_from_name("bwvisu", "other") is None
    assert job_id_from_name("bwvisu", "bwvisu-a;b") is None
    assert parse_sbatch_id("12345\n") == "12345"
    assert parse_sbatch_id("12345;cluster\n") == "12345"
    with pytest.raises(ValueError):
        parse_sbatch_id("sbatch: error\n")
