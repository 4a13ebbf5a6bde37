"""Slurm's compressed host lists (`cn[0-3,7],gpu[01-02]`) expanded into host names. Pure."""

from __future__ import annotations

import itertools
import re

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
MAX_HOSTS = 100_000


def expand_hostlist(text: str) -> list[str]:
    """Every host named by a Slurm host list, in order; zero padding is kept (`01-03`)."""
    hosts: list[str] = []
    for term in _split_top(text.strip()):
        hosts.extend(_expand_term(term))
        if len(hosts) > MAX_HOSTS:
            raise ValueError(f"host list names more than {MAX_HOSTS} hosts")
    return hosts


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets."""
    terms: list[str] = []
    depth = 0
    start = 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in host list {text!r}")
        elif char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced '[' in host list {text!r}")
    terms.append(text[start:])
    return [t for t in terms if t]


def _expand_term(term: str) -> list[str]:
    # `rack[1-2]-n[01-02]` is a product over its bracket groups.
    parts: list[list[str]] = []
    pos = 0
    while pos < len(term):
        open_at = term.find("[", pos)
        if open_at < 0:
            parts.append([term[pos:]])
            break
        close_at = term.index("]", open_at)
        parts.append([term[pos:open_at]])
        parts.append(_expand_ranges(term[open_at + 1 : close_at], term))
        pos = close_at + 1
    return ["".join(p) for p in itertools.product(*parts)]


def _expand_ranges(body: str, term: str) -> list[str]:
    values: list[str] = []
    for piece in body.split(","):
        match = _RANGE.fullmatch(piece.strip())
        if match is None:
            raise ValueError(f"bad range {piece!r} in host list term {term!r}")
        first, last = match.group(1), match.group(2) or match.group(1)
        low, high = int(first), int(last)
        if high < low:
            raise ValueError(f"descending range {piece!r} in {term!r}")
        if high - low > MAX_HOSTS:
            raise ValueError(f"range {piece!r} in {term!r} is too large")
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        values.extend(str(n).zfill(width) for n in range(low, high + 1))
    return values
