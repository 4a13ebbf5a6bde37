"""Questions runner-api asks the cluster through scheduler-adapter (which owns SSH)."""

from __future__ import annotations

import asyncio

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.needs import ClusterFacts
from bwvisu_common.rpc import (
    CHECK_USER,
    CLUSTER_FACTS,
    JOB_LOG,
    CheckUser,
    CheckUserReply,
    ClusterFactsQuestion,
    JobLog,
    JobLogReply,
)

NO_RESPONDERS_PATIENCE = 2.0  # seconds
ASK_AGAIN_AFTER = 5.0  # seconds without an answer before a question goes out again


async def _ask(nc: NatsClient, subject: str, request: msgspec.Struct, timeout: float) -> bytes:
    """The answer to a question that only reads (so asking twice does no harm), within `timeout`.

    A question handed to a replica whose node just dropped off the network is lost: after
    ASK_AGAIN_AFTER it goes out once more (NATS picks a replica anew) while the first still waits,
    and whichever answer comes first counts; a slow answer is as good as ever.
    """
    data = msgspec.json.encode(request)
    deadline = asyncio.get_running_loop().time() + timeout
    first = asyncio.ensure_future(_ask_once(nc, subject, data, deadline))
    asking = {first}
    try:
        done, _ = await asyncio.wait(asking, timeout=min(ASK_AGAIN_AFTER, timeout))
        if not done:
            asking.add(asyncio.ensure_future(_ask_once(nc, subject, data, deadline)))
        problem: Exception | None = None
        for answered in asyncio.as_completed(asking):
            try:
                return await answered
            except DependencyUnavailable as exc:
                problem = exc
        assert problem is not None
        raise problem
    finally:
        for task in asking:
            task.cancel()


async def _ask_once(nc: NatsClient, subject: str, data: bytes, deadline: float) -> bytes:
    # A scheduler-adapter that restarts, or whose interest has not reached this server yet, is
    # there within moments: nobody to answer is the answer only after NO_RESPONDERS_PATIENCE.
    loop = asyncio.get_running_loop()
    patience = loop.time() + NO_RESPONDERS_PATIENCE
    while True:
        try:
            msg = await nc.request(subject, data, timeout=max(0.01, deadline - loop.time()))
            return bytes(msg.data)
        except nats.errors.NoRespondersError as exc:
            if loop.time() >= patience:
                raise DependencyUnavailable("no scheduler-adapter is running to ask the cluster") from exc
            await asyncio.sleep(0.1)
        except (TimeoutError, nats.errors.Error) as exc:
            raise DependencyUnavailable(f"the cluster did not answer in time: {exc!r}") from exc


class NatsUserDirectory:
    """Whether a user may run jobs: `id <user>` on a command node and the site's rule, via core NATS."""

    def __init__(self, nc: NatsClient, timeout: float = 20.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def refusal(self, uid: str) -> str | None:
        reply = msgspec.json.decode(await _ask(self._nc, CHECK_USER, CheckUser(uid=uid), self._timeout),
                                    type=CheckUserReply)
        if reply.error:
            raise DependencyUnavailable(reply.error)
        return None if reply.exists else (reply.reason or f"no such user on the cluster: {uid}")


class NatsJobLogs:
    """The end of a job's log file, read as its user on a command node, via a core NATS request."""

    def __init__(self, nc: NatsClient, timeout: float = 20.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def tail(self, uid: str, job_id: str, lines: int) -> str:
        request = JobLog(uid=uid, job_id=job_id, lines=lines)
        reply = msgspec.json.decode(await _ask(self._nc, JOB_LOG, request, self._timeout),
                                    type=JobLogReply)
        if reply.error:
            raise DependencyUnavailable(reply.error)
        return reply.text


class NatsClusterFacts:
    """What scheduler-adapter last saw of the cluster for the apps' needs, via a core NATS request."""

    def __init__(self, nc: NatsClient, timeout: float = 20.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def facts(self) -> ClusterFacts:
        data = await _ask(self._nc, CLUSTER_FACTS, ClusterFactsQuestion(), self._timeout)
        try:
            return msgspec.json.decode(data, type=ClusterFacts)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DependencyUnavailable(f"scheduler-adapter's cluster facts are unreadable: {exc}") from exc
