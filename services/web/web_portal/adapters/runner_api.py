"""runner-api over HTTP (httpx), as the `bwvisu-web` account, always on behalf of one user.

With several runner-api replicas (one per middleware node), a request that cannot even connect goes
to the next one; the one that answered last is tried first. A request that connected but got no
answer in time is not sent again (a submit may have been taken), except a read of a job's state:
runner-api answers it from memory at once, so silence means its node is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from bwvisu_common.needs import ClusterFacts
from web_portal.errors import NotFound, Rejected, RunnerUnavailable

log = logging.getLogger(__name__)

# runner-api answers a submit once Slurm took or refused the job: up to a minute.
SUBMIT_TIMEOUT = 75.0
READ_TIMEOUT = 30.0
LOOK_TIMEOUT = 5.0  # a job's state, read from runner-api's memory
# A replica whose node is gone drops packets rather than refusing: give up on it soon, nothing was sent.
CONNECT_TIMEOUT = 3.0


class RunnerApiClient:
    """The JobRunner port over runner-api's HTTP API."""

    def __init__(self, base_urls: str | Sequence[str], user: str, password: str,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("no runner-api URL")
        self._urls = [u.rstrip("/") for u in urls]
        self._current = 0  # the replica that answered last
        self._http = httpx.AsyncClient(auth=(user, password), transport=transport,
                                       timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, uid: str, template: str, variables: Mapping[str, str]) -> str:
        body = {"uid": uid, "template-name": template, "variables": dict(variables)}
        r = await self._call("POST", "/jobs", json=body,
                             timeout=httpx.Timeout(SUBMIT_TIMEOUT, connect=CONNECT_TIMEOUT))
        if r.status_code == 200:
            return str(r.json()["job-id"])
        answer = _answer(r)
        if r.status_code == 400:
            raise Rejected(str(answer.get("field", "")), str(answer.get("response", "refused")))
        if r.status_code == 404:
            raise Rejected("uid", str(answer.get("response", "unknown user")))
        raise _unavailable(r, answer)

    async def cancel(self, job_id: str, uid: str) -> None:
        r = await self._call("DELETE", f"/jobs/{quote(job_id, safe='')}", params={"uid": uid})
        if r.status_code == 404:
            raise NotFound("no such running session")
        if r.status_code != 200:
            raise _unavailable(r, _answer(r))

    async def extend(self, job_id: str, uid: str, minutes: int) -> None:
        r = await self._call("POST", f"/jobs/{quote(job_id, safe='')}/extend",
                             json={"uid": uid, "minutes": minutes})
        if r.status_code == 200:
            return
        answer = _answer(r)
        if r.status_code == 404:
            raise NotFound("no such running session")
        if r.status_code in (400, 403, 409):
            raise Rejected(str(answer.get("field", "minutes")), str(answer.get("response", "refused")))
        raise _unavailable(r, answer)

    async def log_tail(self, job_id: str, uid: str, lines: int) -> str:
        r = await self._call("GET", f"/jobs/{quote(job_id, safe='')}/log",
                             params={"uid": uid, "lines": str(lines)})
        if r.status_code == 404:
            raise NotFound("no such session")
        if r.status_code != 200:
            raise _unavailable(r, _answer(r))
        return str(r.json().get("log", ""))

    async def connect_url(self, job_id: str, uid: str) -> str:
        # The answer carries the session secret: it is used, never logged.
        r = await self._call("GET", f"/jobs/{quote(job_id, safe='')}", params={"uid": uid},
                             timeout=httpx.Timeout(LOOK_TIMEOUT, connect=CONNECT_TIMEOUT), again=True)
        if r.status_code == 404:
            raise NotFound("no such session")
        if r.status_code != 200:
            raise _unavailable(r, _answer(r))
        connect = _answer(r).get("connect")
        url = connect.get("url") if isinstance(connect, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise NotFound("the session has nothing to connect to (yet)")
        return url

    async def allow_client(self, job_id: str, uid: str, address: str) -> list[str]:
        r = await self._call("POST", f"/jobs/{quote(job_id, safe='')}/clients",
                             json={"uid": uid, "address": address})
        if r.status_code == 200:
            return [str(a) for a in r.json().get("client-addresses", [])]
        answer = _answer(r)
        if r.status_code == 404:
            raise NotFound("no such running session")
        if r.status_code == 400:
            raise Rejected(str(answer.get("field", "address")), str(answer.get("response", "refused")))
        raise _unavailable(r, answer)

    async def cluster_facts(self) -> ClusterFacts:
        r = await self._call("GET", "/apps/requirements", again=True)
        if r.status_code != 200:
            raise _unavailable(r, _answer(r))
        try:
            return msgspec.json.decode(r.content, type=ClusterFacts)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RunnerUnavailable(f"runner-api's answer on the cluster is unreadable: {exc}") from exc

    async def _call(self, method: str, path: str, again: bool = False, **kwargs: Any) -> httpx.Response:
        """`again`: a request that got no answer in time may go to the next replica too."""
        last: Exception | None = None
        for step in range(len(self._urls)):
            index = (self._current + step) % len(self._urls)
            try:
                r = await self._http.request(method, self._urls[index] + path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing sent: the next may take it
                log.warning("runner-api at %s cannot be reached: %s", self._urls[index], exc)
                last = exc
                continue
            except httpx.TimeoutException as exc:
                if again:
                    log.warning("runner-api at %s did not answer in time", self._urls[index])
                    last = exc
                    continue
                raise RunnerUnavailable("runner-api did not answer in time") from exc
            except httpx.HTTPError as exc:
                raise RunnerUnavailable(f"runner-api cannot be reached: {exc}") from exc
            self._current = index
            return r
        raise RunnerUnavailable(f"runner-api cannot be reached: {last}") from last


def _answer(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _unavailable(r: httpx.Response, answer: Mapping[str, Any]) -> RunnerUnavailable:
    if r.status_code == 401:
        log.error("runner-api refused the portal's credentials (runner-api.password-file)")
        return RunnerUnavailable("the portal cannot log in to runner-api")
    return RunnerUnavailable(str(answer.get("response") or f"runner-api answered {r.status_code}"))
