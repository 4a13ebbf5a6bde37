"""NatsUserDirectory: asks scheduler-adapter (which owns SSH) whether a user exists."""

from __future__ import annotations

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.rpc import CHECK_USER, CheckUser, CheckUserReply


class NatsUserDirectory:
    """A core NATS request to the scheduler-adapters' check-user responder."""

    def __init__(self, nc: NatsClient, timeout: float = 20.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def exists(self, uid: str) -> bool:
        try:
            msg = await self._nc.request(CHECK_USER, msgspec.json.encode(CheckUser(uid=uid)),
                                         timeout=self._timeout)
        except nats.errors.NoRespondersError as exc:
            raise DependencyUnavailable("no scheduler-adapter is running to ask the cluster") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise DependencyUnavailable(f"the cluster did not answer in time: {exc!r}") from exc
        reply = msgspec.json.decode(msg.data, type=CheckUserReply)
        if reply.error:
            raise DependencyUnavailable(reply.error)
        return reply.exists
