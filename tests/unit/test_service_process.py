"""The process skeleton every service runs in: stops on a signal or a dead task, names the task."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from bwvisu_common.service_process import ServiceProcess, TaskDied, stop_on_signals


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


async def test_signals_set_the_stop_event_only_while_inside() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = asyncio.Event()
    with stop_on_signals(stop):
        assert signal.getsignal(signal.SIGTERM) != before
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGINT)
        await asyncio.wait_for(stop.wait(), 5)
    assert signal.getsignal(signal.SIGTERM) == before, "SIGTERM's own meaning is back"


async def test_healthy_until_stopping_or_a_task_ends() -> None:
    ended = asyncio.Event()

    async def short() -> None:
        await ended.wait()

    async with ServiceProcess("svc") as process:
        await process.follow(_ReadModel(), timeout=5)
        task = process.spawn("short", short())
        assert process.healthy()
        ended.set()
        await task
        assert not process.healthy()
    async with ServiceProcess("svc") as process:
        await process.follow(_ReadModel(), timeout=5)
        process.stop.set()
        assert not process.healthy()


async def test_a_one_shot_task_ends_or_fails_without_stopping_the_service(caplog) -> None:
    stop = asyncio.Event()
    blocked = asyncio.Event()
    cancelled: list[str] = []

    async def done() -> None:
        return None

    async def fails() -> None:
        raise ValueError("sweep broke")

    async def blocks() -> None:
        try:
            await blocked.wait()
        except asyncio.CancelledError:
            cancelled.append("blocks")
            raise

    async with ServiceProcess("svc", stop) as process:
        await process.follow(_ReadModel(), timeout=5)
        once = [process.spawn_once(name, work) for name, work in
                (("done", done()), ("sweep", fails()), ("blocks", blocks()))]
        await asyncio.wait(once[:2])
        assert process.healthy()
        running = asyncio.create_task(process.run_until_stopped())
        await asyncio.sleep(0)
        assert not running.done(), "one-shot tasks ending do not stop the service"
        stop.set()
        await asyncio.wait_for(running, 5)
    assert cancelled == ["blocks"]
    assert "svc: sweep failed: ValueError('sweep broke')" in caplog.text


async def test_a_signal_while_starting_stops_cleanly_without_waiting_for_the_start() -> None:
    closed: list[str] = []
    never = asyncio.Event()

    async def connect() -> str:
        await never.wait()  # NATS that never comes
        return "connected"

    async with ServiceProcess("svc") as process:
        process.stack.callback(closed.append, "store")
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(process.starting(connect()), 5)
        raise AssertionError("not reached: the signal ends the start")
    assert closed == ["store"]


async def test_a_signal_while_the_read_model_catches_up_stops_cleanly() -> None:
    class Slow:
        async def run(self, caught_up: asyncio.Event | None = None) -> None:
            await asyncio.Event().wait()

    async with ServiceProcess("svc") as process:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(process.follow(Slow()), 5)
        raise AssertionError("not reached")


async def test_starting_returns_what_the_start_gives() -> None:
    async def connect() -> str:
        return "connected"

    async with ServiceProcess("svc") as process:
        assert await process.starting(connect()) == "connected"


async def test_a_port_that_cannot_be_bound_is_named() -> None:
    import socket

    from fastapi import FastAPI

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TaskDied, match=f"could not listen on 127.0.0.1:{port}"):
            async with ServiceProcess("svc") as process:
                process.serve_http(FastAPI(), "127.0.0.1", port)
                await asyncio.wait_for(process.run_until_stopped(), 10)
