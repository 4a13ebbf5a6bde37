"""scheduler-adapter's handlers and watcher on real nats-server and etcd, Slurm scripted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.jetstream import JetStreamEventStore
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.state_keys import token_key
from bwvisu_common.templates import FileTemplates
from scheduler_adapter.adapters.slurm import PRIVATE_UMASK, SlurmCli
from scheduler_adapter.domain.render import SubmitConfig
from scheduler_adapter.handlers import JobHandlers
from scheduler_adapter.watcher import Watcher
from tests.fakes.command_runner import FakeCommandRunner, fake_id

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running(events: JetStreamEventStore, state: EtcdStateStore,
                  runner: FakeCommandRunner) -> AsyncIterator[LiveJobs]:
    scheduler = SlurmCli(runner)
    handlers = JobHandlers(events, state, scheduler, FileTemplates(), SubmitConfig(home_prefix="/home"))
    jobs = LiveJobs(events, state)
    watcher = Watcher(scheduler, jobs.all, events, tag="bwvisu", interval=0.05, absent_polls_to_finish=2,
                      in_flight=handlers.in_flight)
    stop = asyncio.Event()
    caught_up = asyncio.Event()
    tasks = [asyncio.create_task(jobs.run(caught_up))]
    await caught_up.wait()
    tasks += [asyncio.create_task(events.consume("test-scheduler", handlers.handle, stop)),
              asyncio.create_task(watcher.run(stop))]
    try:
        yield jobs
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_submitted_to_finished_through_the_real_stream(
    event_store: JetStreamEventStore, state_store: EtcdStateStore
) -> None:
    squeue: list[str] = [""]
    runner = FakeCommandRunner().on(["id", "--", "*"], fake_id({"alice": (1001, ["alice"])}))
    runner.on([*PRIVATE_UMASK, "sudo", "-n", "-u", "alice", "sbatch", "**"], "42\n")
    runner.on(["squeue", "**"], lambda argv, input: _ok(squeue[0]))
    async with running(event_store, state_store, runner) as jobs:
        await event_store.append([ev.JobSubmitted(job_id="j1", uid="alice", template_name="sleep",
                                                  variables={"seconds": "1"})], expected_version=0)
        assert await jobs.wait_for("j1", lambda v: v.slurm_id == "42", 10) is not None
        assert await state_store.get_secret(token_key("j1")) is not None
        squeue[0] = "42|RUNNING|None|cn[0-1]|alice|0|bwvisu-j1\n"
        view = await jobs.wait_for("j1", lambda v: v.state == "running", 10)
        assert view is not None and view.nodes == ["cn0", "cn1"]
        squeue[0] = "42|COMPLETED|None|cn[0-1]|alice|0|bwvisu-j1\n"
        view = await jobs.wait_for("j1", lambda v: v.state == "finished", 10)
        assert view is not None and view.exit_code == 0
        for _ in range(50):
            if await state_store.get_secret(token_key("j1")) is None:
                break
            await asyncio.sleep(0.1)
        assert await state_store.get_secret(token_key("j1")) is None
    assert len(runner.calls_of("sbatch")) == 1


def _ok(stdout: str):  # type: ignore[no-untyped-def]
    from scheduler_adapter.ports import CommandResult

    return CommandResult(0, stdout, "")
