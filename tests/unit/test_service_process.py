"""The process skeleton every service runs in: stops on a signal or a dead task, names the task."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from bwvisu_common.service_process import ServiceProcess, TaskDied


class _ReadModel:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.cancelled = False

    async def run(self, caught_up: asyncio.Event | None = None) -> None:
        if self.fail:
            raise RuntimeError("stream gone")
        assert caught_up is not None
        caught_up.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_dead_task_stops_the_service_and_is_named() -> None:
    closed: list[str] = []

    async def worker() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(TaskDied, match="task watcher raised ValueError"):
        async with ServiceProcess("svc") as process:
            process.stack.callback(closed.append, "store")
            process.spawn("watcher", worker())
            await process.run_until_stopped()
    assert closed == ["store"]


async def test_a_task_that_returns_counts_as_dead() -> None:
    async def worker() -> None:
        return None

    with pytest.raises(TaskDied, match="task loop ended"):
        async with ServiceProcess("svc") as process:
            process.spawn("loop", worker())
            await process.run_until_stopped()


async def test_sigterm_stops_cleanly_and_cancels_the_read_model() -> None:
    jobs = _ReadModel()
    async with ServiceProcess("svc") as process:
        await process.follow(jobs, timeout=5)
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(process.run_until_stopped(), 5)
    assert jobs.cancelled


async def test_a_read_model_that_dies_before_catching_up_is_named() -> None:
    with pytest.raises(TaskDied, match="read-model raised RuntimeError"):
        async with ServiceProcess("svc") as process:
            await process.follow(_ReadModel(fail=True), timeout=5)


async def test_http_server_stops_with_the_service() -> None:
    from fastapi import FastAPI

    from bwvisu_cli.servers import free_port, listening

    port = free_port()
    stop = asyncio.Event()
    async with ServiceProcess("svc", stop) as process:
        process.serve_http(FastAPI(), "127.0.0.1", port)
        runner = asyncio.create_task(process.run_until_stopped())
        for _ in range(100):
            if await asyncio.to_thread(listening, "127.0.0.1", port):
                break
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(listening, "127.0.0.1", port)
        stop.set()
        await asyncio.wait_for(runner, 5)
    assert not await asyncio.to_thread(listening, "127.0.0.1", port)
