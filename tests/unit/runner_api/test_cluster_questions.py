"""runner-api's questions to the cluster: asked again when a scheduler-adapter took one and fell silent."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import msgspec
import nats.errors
import pytest

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.rpc import CheckUserReply
from runner_api.adapters import nats_requests
from runner_api.adapters.nats_requests import NatsUserDirectory


class Replicas:
    """Core NATS requests to scheduler-adapters: the first `lost` questions go to a silent one."""

    def __init__(self, lost: int, no_responders: int = 0, slow: float = 0.0) -> None:
        self.lost = lost
        self.no_responders = no_responders
        self.slow = slow  # every answer takes this long
        self.asked: list[float] = []

    async def request(self, subject: str, data: bytes, timeout: float) -> Any:
        self.asked.append(timeout)
        if self.no_responders > 0:
            self.no_responders -= 1
            raise nats.errors.NoRespondersError
        if self.lost > 0:
            self.lost -= 1
            await asyncio.sleep(timeout)
            raise nats.errors.TimeoutError
        await asyncio.sleep(self.slow)
        return SimpleNamespace(data=msgspec.json.encode(CheckUserReply(exists=True)))


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nats_requests, "ASK_AGAIN_AFTER", 0.05)


async def test_a_question_a_silent_replica_took_is_asked_again() -> None:
    replicas = Replicas(lost=1)
    assert await asyncio.wait_for(NatsUserDirectory(replicas, timeout=2.0).refusal("alice"), 1.0) is None  # type: ignore[arg-type]
    assert len(replicas.asked) == 2


async def test_a_slow_answer_still_counts_and_the_question_goes_out_twice_at_most() -> None:
    replicas = Replicas(lost=0, slow=0.3)  # slower than ASK_AGAIN_AFTER, well within the timeout
    assert await NatsUserDirectory(replicas, timeout=2.0).refusal("alice") is None  # type: ignore[arg-type]
    assert len(replicas.asked) == 2


async def test_no_answer_within_the_timeout_names_the_cluster() -> None:
    replicas = Replicas(lost=1000)
    with pytest.raises(DependencyUnavailable, match="did not answer in time"):
        await asyncio.wait_for(NatsUserDirectory(replicas, timeout=0.3).refusal("alice"), 2)  # type: ignore[arg-type]
    assert len(replicas.asked) == 2


async def test_a_scheduler_adapter_restarting_is_waited_for_briefly() -> None:
    replicas = Replicas(lost=0, no_responders=3)
    assert await NatsUserDirectory(replicas, timeout=2.0).refusal("alice") is None  # type: ignore[arg-type]
