"""Typed job facts: every kind of reason has its words, and words an earlier version wrote read back."""

from __future__ import annotations

import msgspec
import pytest

from bwvisu_common.job_facts import FailureKind, JobState, Why, WhyKind, render, waiting

SAID = [kind for kind in WhyKind if kind is not WhyKind.NONE]


@pytest.mark.parametrize("kind", SAID)
def test_every_kind_reads_back_from_its_words(kind: WhyKind) -> None:
    # An older version's events and snapshots hold only these words: each must say its kind.
    text = "" if render(Why(kind)) == render(Why(kind, "x")) else "Resources (x: y)"
    why = Why(kind, text)
    words = render(why)
    assert words and Why.from_details(words) == why


@pytest.mark.parametrize(("why", "exit_code", "words"), [
    (Why(WhyKind.QUEUED_WAITING, "Resources"), None, "waiting: Resources"),
    (Why(WhyKind.QUEUED_WAITING), None, "waiting"),
    (Why(WhyKind.SCHEDULER_UNREACHABLE, "ssh: refused"), None,
     "Slurm cannot be asked right now: ssh: refused"),
    (Why(WhyKind.SUBMIT_FAILED, "no such user: carol"), None, "submission failed: no such user: carol"),
    (Why(WhyKind.PORTS_REFUSED, "second request"), None, "port request refused: second request"),
    (Why(WhyKind.ENDED, "FAILED"), 2, "ended: FAILED, exit code 2"),
    (Why(WhyKind.ENDED, "ABSENT"), None, "ended: ABSENT"),
    (Why(WhyKind.APP_STARTING), None, "waiting for the application"),
    (Why(WhyKind.NONE, "an older version's words"), None, "an older version's words"),
    (Why(), None, ""),
])
def test_words_as_the_api_has_always_said_them(why: Why, exit_code: int | None, words: str) -> None:
    assert render(why, exit_code) == words


def test_slurms_none_is_no_reason() -> None:
    assert waiting("None") == waiting("") == Why(WhyKind.QUEUED_WAITING)
    assert waiting("Priority") == Why(WhyKind.QUEUED_WAITING, "Priority")


def test_states_and_failure_kinds_keep_their_json_values() -> None:
    assert [s.value for s in JobState] == ["submitted", "running", "available", "completing", "finished"]
    assert msgspec.json.decode(b'"unknown-user"', type=FailureKind) is FailureKind.UNKNOWN_USER
    assert {f.value for f in FailureKind} == {"", "rejected", "unknown-user", "unavailable"}
    assert msgspec.json.encode(Why(WhyKind.PORTS_REFUSED, "x")) == b'{"kind":"ports-refused","text":"x"}'
