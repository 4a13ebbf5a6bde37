"""Who the person is: PAM for user name and password, or the header of a trusted SSO proxy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pam
from starlette.datastructures import Headers

from bwvisu_common.errors import ConfigError, InvalidInput
from bwvisu_common.validation import check_uid
from web_portal.domain.client_address import is_trusted, parse_networks
from web_portal.errors import AmbiguousUser

log = logging.getLogger(__name__)


class PamAuthenticator:
    """Checks passwords of the host's real accounts through PAM, in a worker thread."""

    def __init__(self, service: str = "login") -> None:
        self._service = service

    async def authenticate(self, user: str, password: str) -> bool:
        return await asyncio.to_thread(self._check, user, password)

    def _check(self, user: str, password: str) -> bool:
        handle = pam.pam()  # one per call: the handle keeps per-conversation state
        ok = bool(handle.authenticate(user, password, service=self._service))
        if not ok:
            log.info("PAM refused %r: %s", user, handle.reason)
        return ok


class TrustedHeaderAuthenticator:
    """Reads the user name from a header, only on requests coming from the configured proxies."""

    def __init__(self, header: str, proxies: Iterable[str]) -> None:
        self.header = header
        try:
            self._networks = parse_networks(proxies)
        except ValueError as exc:
            raise ConfigError(f"web.trusted-proxies: {exc}") from exc

    def user(self, client_host: str | None, headers: Headers) -> str | None:
        """The user the proxy names; None when the request did not come through a trusted proxy.

        AmbiguousUser when the header comes twice or holds a list: which one the proxy meant
        (and which one the client smuggled past it) cannot be told, so neither is believed.
        """
        if not is_trusted(client_host, self._networks):
            return None
        values = headers.getlist(self.header)
        if len(values) > 1 or any("," in v for v in values):
            log.warning("trusted proxy %s sent %d %s header(s) with a list; refused",
                        client_host, len(values), self.header)
            raise AmbiguousUser(f"The {self.header} header came more than once or named several "
                                "users; the portal will not guess which one is meant.")
        name = values[0].strip() if values else ""
        try:
            return check_uid(name) if name else None
        except InvalidInput:
            log.warning("trusted proxy %s sent a bad user name %r", client_host, name[:40])
            return None
