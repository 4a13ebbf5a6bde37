"""One set of expectations for every Election: the in-memory fake and etcd alike."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bwvisu_common.adapters.etcd_election import LEASE_TTL, EtcdElection
from bwvisu_common.election import LeadershipLost
from tests.conftest import Server
from tests.fakes.election import ElectionBoard, FakeElection

Make = Callable[[str], Any]


class ElectionContract:
    @pytest.fixture
    def make(self) -> Make:  # pragma: no cover - overridden
        raise NotImplementedError

    async def lose_lease(self, election: Any) -> None:  # pragma: no cover - overridden
        """The store lets the replica's lease go, as when its refreshes stop reaching it."""
        raise NotImplementedError

    async def test_one_holder_of_a_role_at_a_time(self, make: Make) -> None:
        a, b = make("a"), make("b")
        term = await a.campaign("watcher")
        assert term.held() and term.holder == "a" and term.role == "watcher"
        assert await b.try_hold("watcher") is None
        assert await a.try_hold("watcher") is None, "held is held, by this replica too"
        assert await a.holder("watcher") == await b.holder("watcher") == "a"
        other = await b.try_hold("submit/j1")
        assert other is not None and other.held(), "roles are independent of each other"
        assert await a.holder("nobody's") is None

    async def test_a_role_given_up_goes_to_the_waiting_candidate_at_once(self, make: Make) -> None:
        a, b = make("a"), make("b")
        first = await a.campaign("watcher")
        waiting = asyncio.create_task(b.campaign("watcher"))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "nobody else holds the role while its holder does"
        started = time.monotonic()
        await a.resign(first)
        second = await asyncio.wait_for(waiting, 3)
        assert time.monotonic() - started < 1.5, "no wait for a lease to expire"
        assert not first.held() and second.held() and second.fence > first.fence
        with pytest.raises(LeadershipLost):
            first.check()
        second.check()
        assert await a.holder("watcher") == "b"

    async def test_a_lost_lease_ends_the_term_and_frees_the_role(self, make: Make) -> None:
        a, b = make("a"), make("b")
        term = await a.campaign("watcher")
        await self.lose_lease(a)
        await asyncio.wait_for(term.wait_lost(), LEASE_TTL + 2)
        assert not term.held() and term.why()
        with pytest.raises(LeadershipLost):
            term.check()
        second = await asyncio.wait_for(b.campaign("watcher"), LEASE_TTL + 3)
        assert second.held() and await a.holder("watcher") == "b"
        again = await asyncio.wait_for(a.try_hold("elsewhere"), 10)
        assert again is not None and again.held(), "the replica campaigns again on a new lease"

    async def test_a_cancelled_campaign_leaves_the_role_free(self, make: Make) -> None:
        a, b = make("a"), make("b")
        held = await b.campaign("watcher")
        for _ in range(3):
            waiting = asyncio.create_task(a.campaign("watcher"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        await b.resign(held)
        deadline = time.monotonic() + 3
        while await a.holder("watcher") is not None:
            assert time.monotonic() < deadline, "a cancelled campaign took the role"
            await asyncio.sleep(0.05)
        assert await b.try_hold("watcher") is not None


class TestFakeElection(ElectionContract):
    @pytest.fixture
    def make(self) -> Make:
        board = ElectionBoard()
        return lambda candidate: FakeElection(board, candidate)

    async def lose_lease(self, election: Any) -> None:
        election.lose_lease()


@pytest.mark.integration
class TestEtcdElection(ElectionContract):
    @pytest.fixture
    async def make(self, etcd_server: Server) -> AsyncIterator[Make]:
        prefix = f"/test-{uuid.uuid4().hex[:8]}/"
        made: list[EtcdElection] = []

        def make(candidate: str) -> EtcdElection:
            made.append(EtcdElection([(etcd_server.host, etcd_server.port)], candidate, prefix=prefix))
            return made[-1]

        yield make
        for election in made:
            await election.close()

    async def lose_lease(self, election: Any) -> None:
        await election._client.revoke_lease(election._lease_id)

    async def test_a_holder_whose_refreshes_go_unanswered_stops_holding_by_its_own_clock(
        self, make: Make
    ) -> None:
        a = make("a")
        term = await a.campaign("watcher")

        async def unanswered(lease_id: int) -> None:
            await asyncio.sleep(3600)

        a._client.refresh_lease = unanswered
        started = time.monotonic()
        await asyncio.wait_for(term.wait_lost(), LEASE_TTL + 1)
        assert time.monotonic() - started <= LEASE_TTL + 0.1, "never past the lease's possible expiry"
        with pytest.raises(LeadershipLost):
            term.check()

    async def test_a_campaign_cancelled_while_etcd_answers_gives_back_what_it_took(self, make: Make) -> None:
        a = make("a")
        assert await a.holder("watcher") is None  # the connection and lease are there now
        real = a._client.transaction

        async def slow_answer(*args: Any, **kwargs: Any) -> Any:
            answer = await real(*args, **kwargs)  # etcd made the key ...
            await asyncio.sleep(0.5)  # ... and the answer is late
            return answer

        a._client.transaction = slow_answer
        attempt = asyncio.create_task(a.try_hold("watcher"))
        await asyncio.sleep(0.2)
        attempt.cancel()
        await asyncio.gather(attempt, return_exceptions=True)
        a._client.transaction = real
        deadline = time.monotonic() + 3
        while await a.holder("watcher") is not None:
            assert time.monotonic() < deadline, "the key made for a cancelled campaign stayed"
            await asyncio.sleep(0.05)

    async def test_closing_frees_every_role_at_once(self, make: Make) -> None:
        a, b = make("a"), make("b")
        await a.campaign("watcher")
        await a.try_hold("submit/j1")
        await a.close()
        assert await b.try_hold("watcher") is not None and await b.try_hold("submit/j1") is not None

    async def test_after_a_lost_lease_the_next_member_is_asked_first(self, etcd_server: Server) -> None:
        # Two names of one etcd stand for two members: which one the new lease comes from is what counts.
        members = [(etcd_server.host, etcd_server.port), ("localhost", etcd_server.port)]
        a = EtcdElection(members, "a", prefix=f"/test-{uuid.uuid4().hex[:8]}/")
        try:
            term = await a.campaign("watcher")
            assert a._client._host == "127.0.0.1"
            await self.lose_lease(a)
            await asyncio.wait_for(term.wait_lost(), LEASE_TTL + 2)
            again = await asyncio.wait_for(a.campaign("watcher"), 10)
            assert again.held() and a._client._host == "localhost"
        finally:
            await a.close()

    async def test_an_unreachable_etcd_is_dependency_unavailable(self) -> None:
        from bwvisu_cli.servers import free_port
        from bwvisu_common.errors import DependencyUnavailable

        nowhere = EtcdElection([("127.0.0.1", free_port())], "a")
        try:
            with pytest.raises(DependencyUnavailable):
                await nowhere.try_hold("watcher")
        finally:
            await nowhere.close()
