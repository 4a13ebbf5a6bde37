"""FakeElection: the Election for unit tests; tests/contract/test_election.py holds it to etcd."""

from __future__ import annotations

import asyncio
import itertools

from bwvisu_common.election import LeaseClock, Term
from bwvisu_common.errors import DependencyUnavailable


class ElectionBoard:
    """What etcd holds for the FakeElections of one test: role -> the term that took it last."""

    def __init__(self) -> None:
        self.terms: dict[str, Term] = {}
        self.fences = itertools.count(1)


class FakeElection:
    """One replica's campaigns on a shared board; its lease lasts until `lose_lease`."""

    def __init__(self, board: ElectionBoard, candidate: str, *, retry_every: float = 0.01) -> None:
        self.board = board
        self.candidate = candidate
        self._retry_every = retry_every
        self._lease = LeaseClock(float("inf"), 0.0)
        self.unreachable = False  # True: every call raises DependencyUnavailable, as with etcd gone

    def lose_lease(self, why: str = "etcd let the lease expire") -> None:
        """What a replica's lease expiring does: its terms end, its roles are free."""
        self._lease.lose(why)

    async def campaign(self, role: str) -> Term:
        while True:
            term = await self.try_hold(role)
            if term is not None:
                return term
            await asyncio.sleep(self._retry_every)

    async def try_hold(self, role: str) -> Term | None:
        self._check_reachable()
        if not self._lease.alive():
            self._lease = LeaseClock(float("inf"), 0.0)  # a new lease, as after a lost one
        current = self.board.terms.get(role)
        if current is not None and current.held():
            return None
        term = Term(role, self.candidate, self._lease, fence=next(self.board.fences))
        self.board.terms[role] = term
        return term

    async def resign(self, term: Term) -> None:
        term.end("given up")
        self._check_reachable()

    async def holder(self, role: str) -> str | None:
        self._check_reachable()
        current = self.board.terms.get(role)
        return current.holder if current is not None and current.held() else None

    def _check_reachable(self) -> None:
        if self.unreachable:
            raise DependencyUnavailable("etcd: (fake) unreachable")
