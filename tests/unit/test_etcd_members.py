"""Which etcd member a store moves to, and which errors let a call be made again."""

from __future__ import annotations

import aetcd
import grpc
import pytest

from bwvisu_common.adapters import etcd_members
from bwvisu_common.adapters.etcd_members import EtcdLogin, EtcdMembers, member_lost, never_sent
from bwvisu_common.errors import DependencyUnavailable

MEMBERS = [("10.0.0.1", 2379), ("10.0.0.2", 2379), ("10.0.0.3", 2379)]


@pytest.fixture
def answering(monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], list[str]]:
    """Members that answer (by host), and every member tried, in order."""
    alive, tried = {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, []

    async def open_client(host: str, port: int, login: EtcdLogin, probe: bytes) -> str:
        tried.append(host)
        if host not in alive:
            raise DependencyUnavailable(f"cannot use etcd at {host}:{port}")
        return f"client of {host}"

    monkeypatch.setattr(etcd_members, "open_client", open_client)
    return alive, tried


async def test_a_store_moves_to_the_next_member_and_tries_the_lost_one_last(answering):
    alive, tried = answering
    members = EtcdMembers(MEMBERS, EtcdLogin(), b"probe")
    assert await members.first_answering() == "client of 10.0.0.1"
    alive.discard("10.0.0.1")
    alive.discard("10.0.0.2")
    tried.clear()
    assert await members.next_answering() == "client of 10.0.0.3"
    assert tried == ["10.0.0.2", "10.0.0.3"] and members.name() == "10.0.0.3:2379"
    alive.add("10.0.0.1")
    alive.discard("10.0.0.3")
    tried.clear()
    assert await members.next_answering() == "client of 10.0.0.1", "round the list"
    assert tried == ["10.0.0.1"]


async def test_no_member_answering_names_every_one(answering):
    alive, tried = answering
    alive.clear()
    with pytest.raises(DependencyUnavailable) as err:
        await EtcdMembers(MEMBERS, EtcdLogin(), b"probe").first_answering()
    assert all(host in str(err.value) for host, _ in MEMBERS)


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def __str__(self) -> str:
        return self._details


def aetcd_error(kind: type[aetcd.ClientError], cause: BaseException) -> aetcd.ClientError:
    try:
        raise kind(str(cause)) from cause
    except aetcd.ClientError as exc:
        return exc


REFUSED = RpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; Connection refused")
CUT = RpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")
LATE = RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


@pytest.mark.parametrize(("error", "lost", "unsent"), [
    (aetcd_error(aetcd.ConnectionFailedError, REFUSED), True, True),
    (ConnectionRefusedError(111, "Connection refused"), True, True),
    (aetcd_error(aetcd.ConnectionFailedError, CUT), True, False),
    (aetcd_error(aetcd.ConnectionTimeoutError, LATE), True, False),
    (LATE, True, False),
    (RpcError(grpc.StatusCode.PERMISSION_DENIED, "permission denied"), False, False),
    (aetcd.InvalidArgumentError("etcdserver: too many operations in txn request"), False, False),
])
def test_which_errors_move_a_store_and_which_allow_any_call_again(error, lost, unsent):
    """A request that may have reached a member is made again only where that is harmless."""
    assert member_lost(error) is lost
    assert never_sent(error) is unsent
