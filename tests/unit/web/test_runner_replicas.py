"""RunnerApiClient with several runner-api replicas: one that cannot be reached is passed over."""

from __future__ import annotations

import httpx
import pytest

from web_portal.adapters.runner_api import RunnerApiClient
from web_portal.errors import RunnerUnavailable


def _transport(down: set[str], seen: list[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host in down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.host == "gone":  # its node's link is down: packets dropped, no refusal
            raise httpx.ConnectTimeout("connect timed out", request=request)
        if request.url.host == "slow":
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200, json={"job-id": f"job-from-{request.url.host}"})

    return httpx.MockTransport(handle)


async def test_a_replica_that_refuses_connections_is_passed_over_and_the_next_answers():
    seen: list[str] = []
    client = RunnerApiClient(["http://a:1", "http://b:1"], "web", "pw", transport=_transport({"a"}, seen))
    assert await client.submit("alice", "t", {}) == "job-from-b"
    # The replica that answered is asked first next time.
    assert await client.submit("alice", "t", {}) == "job-from-b"
    assert seen == ["a", "b", "b"]
    await client.aclose()


async def test_a_replica_whose_node_is_gone_is_passed_over_after_the_connect_timeout():
    seen: list[str] = []
    client = RunnerApiClient(["http://gone:1", "http://b:1"], "web", "pw", transport=_transport(set(), seen))
    assert await client.submit("alice", "t", {}) == "job-from-b"
    assert seen == ["gone", "b"]
    await client.aclose()


async def test_when_every_replica_is_down_the_runner_is_unavailable():
    client = RunnerApiClient(["http://a:1", "http://b:1"], "web", "pw", transport=_transport({"a", "b"}, []))
    with pytest.raises(RunnerUnavailable):
        await client.submit("alice", "t", {})
    await client.aclose()


async def test_a_submit_that_connected_but_got_no_answer_is_not_sent_again():
    seen: list[str] = []
    client = RunnerApiClient(["http://slow:1", "http://b:1"], "web", "pw", transport=_transport(set(), seen))
    with pytest.raises(RunnerUnavailable):
        await client.submit("alice", "t", {})
    assert seen == ["slow"]
    await client.aclose()


async def test_a_single_url_still_works():
    client = RunnerApiClient("http://b:1/", "web", "pw", transport=_transport(set(), []))
    assert await client.submit("alice", "t", {}) == "job-from-b"
    await client.aclose()


async def test_a_read_of_a_job_that_got_no_answer_asks_the_next_replica():
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "slow":
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200, json={"connect": {"url": f"http://{request.url.host}/s"}})

    urls = ["http://slow:1", "http://b:1"]
    client = RunnerApiClient(urls, "web", "pw", transport=httpx.MockTransport(handle))
    assert await client.connect_url("j1", "alice") == "http://b/s"
    assert seen == ["slow", "b"]
    await client.aclose()
