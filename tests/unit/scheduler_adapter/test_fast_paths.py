"""The watcher's fast paths say what the plain code says: parsing, states, exit codes, event ids."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from bwvisu_common.events import new_event_id
from scheduler_adapter.domain.slurm import (
    STATE_MAP,
    Lifecycle,
    SqueueEntry,
    decode_exit,
    lifecycle,
    parse_squeue,
)


def plain_lifecycle(state: str) -> Lifecycle:
    return STATE_MAP.get(state.split(" ", 1)[0].strip().upper(), Lifecycle.UNKNOWN)


def plain_exit(raw: str) -> int | None:
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()):
        return None
    signal = int(raw) & 0x7F
    return 128 + signal if signal else int(raw) >> 8


def plain_parse(text: str, prefix: str) -> tuple[list[tuple[str, ...]], int, frozenset[str], int]:
    """The parser as first written: every line split in full, nothing cached."""
    entries, seen, ambiguous, bad, records = [], set(), set(), 0, 0
    for line in text.splitlines():
        fields = line.split("|", 6)
        if len(fields) != 7 or not fields[0].strip()[:1].isdigit():
            bad += bool(line.strip())
            continue
        records += 1
        slurm_id = fields[0].strip()
        ambiguous |= {slurm_id} & seen
        seen.add(slurm_id)
        if not fields[6].rstrip().startswith(prefix):
            continue
        if not slurm_id.isdigit() or not fields[4].strip():
            bad += 1
            continue
        entries.append((slurm_id, *(f.strip() for f in fields[1:5]), str(plain_exit(fields[5])),
                        fields[6].rstrip()))
    return [e for e in entries if e[0] not in ambiguous], bad, frozenset(ambiguous), records


def as_tuple(e: SqueueEntry) -> tuple[str, ...]:
    return (e.slurm_id, e.state, e.reason, e.nodelist, e.user, str(e.exit_code), e.name)


states = st.sampled_from([*STATE_MAP, "running", "CANCELLED by 1001", " PENDING", "WEIRD", ""])
pieces = st.one_of(states, st.sampled_from(["12", "12_3", "0", "256", "9", " 7 ", "x", "bwvisu-j1",
                                            "alice", "", "|", "\n", "\r", "\u2028"]), st.text(max_size=6))


@given(states)
def test_lifecycle_fast_path_agrees(state: str) -> None:
    assert lifecycle(state) is plain_lifecycle(state)


@given(st.one_of(st.sampled_from(["0", "256", "9", " 15 ", "", "x", "65280"]), st.text(max_size=5)))
def test_exit_codes_decode_alike(raw: str) -> None:
    assert decode_exit(raw) == plain_exit(raw)


@given(st.lists(st.lists(pieces, max_size=9).map("|".join), max_size=8).map("\n".join))
def test_parse_agrees_with_the_plain_parser(text: str) -> None:
    answer = parse_squeue(text, "bwvisu-")
    entries, bad, ambiguous, records = plain_parse(text, "bwvisu-")
    assert [as_tuple(e) for e in answer.entries] == entries
    assert (answer.skipped, answer.ambiguous, answer.records) == (bad, ambiguous, records)


def test_event_ids_are_random_uuid4_hex() -> None:
    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000
    for event_id in ids:
        parsed = uuid.UUID(hex=event_id)
        assert parsed.hex == event_id and parsed.version == 4 and parsed.variant == uuid.RFC_4122
