"""A NATS server whose link went down leaves the others' routing within seconds, so questions to a
queue group (runner-api asking the scheduler-adapters) stop going to its dead members."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats.errors
import pytest

from bwvisu_common.adapters.nats_connection import connect_nats
from tests.clusters import nats_cluster

pytestmark = pytest.mark.integration


async def test_a_silent_servers_queue_members_stop_getting_requests(tmp_path: Path) -> None:
    with nats_cluster(tmp_path / "nats") as cluster:
        silent, live, asking = cluster.members
        answerers = [await connect_nats([f"nats://{m.address}"], f"answers-{m.name}") for m in (silent, live)]
        asker = await connect_nats([f"nats://{asking.address}"], "asks")
        try:
            for nc in answerers:
                async def answer(msg, name=nc.options["name"]) -> None:  # type: ignore[no-untyped-def]
                    await msg.respond(name.encode())
                await nc.subscribe("question", queue="answerers", cb=answer)
                await nc.flush()
            answered: set[str] = set()
            deadline = time.monotonic() + 10
            while answered != {"answers-nats0", "answers-nats1"} and time.monotonic() < deadline:
                # Interest travels to the asking server in a moment: both members get questions.
                try:
                    answered.add((await asker.request("question", b"?", timeout=1)).data.decode())
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                    await asyncio.sleep(0.1)
            assert answered == {"answers-nats0", "answers-nats1"}
            with cluster.paused(silent):
                await asyncio.sleep(10)  # three route pings two seconds apart, and then some
                lost = 0
                for _ in range(12):
                    try:
                        await asker.request("question", b"?", timeout=1)
                    except nats.errors.TimeoutError:
                        lost += 1
                assert lost == 0, f"{lost} of 12 questions went to the silent server's member"
        finally:
            for nc in (*answerers, asker):
                await nc.close()
