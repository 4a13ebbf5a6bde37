"""Fixtures shared by the integration tests of the portal in a browser (portal over fakes, chromium)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import PortalServer, chromium, portal_server


@pytest.fixture(scope="module")
def server() -> Iterator[PortalServer]:
    with portal_server() as running:
        yield running


@pytest.fixture(scope="module")
def browser(server: PortalServer) -> Iterator[Any]:
    # After the server, so it closes its pages' live streams before the server stops.
    with chromium() as b:
        yield b
