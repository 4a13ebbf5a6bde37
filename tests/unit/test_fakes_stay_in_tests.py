"""Fakes live under tests/fakes: no production module imports them (or anything else of tests/)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_production_module_imports_tests() -> None:
    sources = [p for root in ("libs", "services") for p in (REPO / root).rglob("*.py")]
    assert len(sources) > 50, "the production sources were not found"
    offenders: dict[str, list[str]] = {}
    for path in sources:
        wrong = sorted(m for m in imported_modules(path) if m.partition(".")[0] == "tests")
        if wrong:
            offenders[str(path.relative_to(REPO))] = wrong
    assert offenders == {}


def test_no_production_package_ships_a_fake_adapter() -> None:
    shipped = [p for root in ("libs", "services") for p in (REPO / root).rglob("adapters/*.py")
               if p.stem in {"fake", "fakes", "memory", "in_memory"}]
    assert shipped == []
