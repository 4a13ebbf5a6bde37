"""Who the person is: PAM for user name and password, or the header of a trusted SSO proxy."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable

import pam

from bwvisu_common.errors import ConfigError, InvalidInput
from bwvisu_common.validation import check_uid

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
            self._networks = [ipaddress.ip_network(p, strict=False) for p in proxies]
        except ValueError as exc:
            raise ConfigError(f"web.trusted-proxies: {exc}") from exc

    def user(self, client_host: str | None, headers: dict[str, str]) -> str | None:
        """The user the proxy names; None when the request did not come through a trusted proxy."""
        if client_host is None:
            return None
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return None
        if not any(address in net for net in self._networks):
            return None
        name = headers.get(self.header.lower(), "").strip()
        try:
            return check_uid(name) if name else None
        except InvalidInput:
            log.warning("trusted proxy %s sent a bad user name %r", client_host, name[:40])
            return None
