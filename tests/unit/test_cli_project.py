"""`bwvisu project`: the projector runs as a service process (stops on a signal, a dead task is named)."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bwvisu_cli import main as cli
from bwvisu_common.read_model import JobView
from bwvisu_common.service_process import TaskDied
from bwvisu_common.settings import parse_settings
from tests.samples import NO_METRICS_PORTS

SETTINGS = {"bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],
            "metrics": NO_METRICS_PORTS}


class BrokenState:
    async def load_jobs(self) -> tuple[dict[str, JobView], int]:
        raise RuntimeError("etcd answered nonsense")


class EmptyState:
    async def load_jobs(self) -> tuple[dict[str, JobView], int]:
        return {}, 0


class QuietEvents:
    """A stream with no events, ever."""

    def __init__(self) -> None:
        self.following = asyncio.Event()

    async def last_seq(self) -> int:
        return 0

    async def batches(self, after: int, limit: int):  # type: ignore[no-untyped-def]
        self.following.set()
        await asyncio.Event().wait()
        yield []


def stores(state: object, closed: list[str], events: QuietEvents | None = None):  # type: ignore[no-untyped-def]
    async def open_stores(settings: object, stack: AsyncExitStack, name: str) -> tuple[object, object]:
        assert name == "bwvisu-projector"
        stack.callback(closed.append, "stores")
        return events or QuietEvents(), state

    return open_stores


async def test_a_dead_projector_is_named_and_its_stores_closed(monkeypatch) -> None:
    closed: list[str] = []
    monkeypatch.setattr(cli, "open_stores", stores(BrokenState(), closed))
    with pytest.raises(TaskDied, match="projector: task read-model raised RuntimeError"):
        await asyncio.wait_for(cli.project(parse_settings(json.dumps(SETTINGS).encode())), 5)
    assert closed == ["stores"]


async def test_the_projector_runs_until_stopped(monkeypatch) -> None:
    closed: list[str] = []
    events = QuietEvents()
    monkeypatch.setattr(cli, "open_stores", stores(EmptyState(), closed, events))
    stop = asyncio.Event()
    running = asyncio.create_task(cli.project(parse_settings(json.dumps(SETTINGS).encode()), stop))
    await asyncio.wait_for(events.following.wait(), 5)
    assert not running.done() and closed == []
    stop.set()
    await asyncio.wait_for(running, 5)
    assert closed == ["stores"]


def test_a_dead_projector_exits_non_zero_and_says_why(monkeypatch, tmp_path: Path, capsys) -> None:
    config = tmp_path / "bwvisu.json"
    config.write_text(json.dumps(SETTINGS))
    monkeypatch.setattr(cli, "open_stores", stores(BrokenState(), []))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--config", str(config), "project"])
    assert exit_.value.code == 1
    assert "task read-model raised RuntimeError('etcd answered nonsense')" in capsys.readouterr().err
