"""Probes: watch the forwarded ports of running jobs, and report when one opens or closes.

What to probe when, and what an answer means, is domain/probing.py's ProbeBook; this module
probes and appends.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway_agent.domain.probing import ProbeBook
from gateway_agent.gateway import Gateway

log = logging.getLogger(__name__)


class Probes:
    """Probes each forward at its own pace: often while its application is not up, seldom after."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway
        self._book = ProbeBook(gateway.timing)

    async def probe_once(self) -> None:
        """Probe every forward that is due; report ports that opened or closed."""
        gw = self._gw
        forwards = dict(gw.table.rules)
        due = self._book.due(forwards, {job_id: gw.jobs.get(job_id) for job_id in forwards},
                             time.monotonic(), gw.name)
        answers = await asyncio.gather(*(gw.prober.is_open(rule.target_ip, rule.internal_port,
                                                           gw.timing.probe_timeout)
                                         for _, rule in due))
        for (key, _), is_open in zip(due, answers, strict=True):
            event = self._book.answer(key, is_open, gw.name)
            if event is not None:
                await gw.events.append([event])
                log.info("job %s: port %d %s", key[0], key[1], "open" if is_open else "closed")
        self._book.keep_only(gw.table.keys())

    async def run_forever(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:  # a failed append or probe must not stop probing
                log.exception("probing failed; going on")
            await asyncio.sleep(self._gw.timing.fast_probe)
