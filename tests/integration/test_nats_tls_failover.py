"""A service's NATS connection over TLS leaves a server that fell silent within seconds.

Silent as behind a link that went down: the server is stopped (SIGSTOP), its sockets stay open,
and nothing answers, not even TLS's goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bwvisu_cli.servers import free_port, nats_command
from bwvisu_cli.tls import ensure_demo_certificates
from bwvisu_common.adapters.nats_connection import NatsAuth, connect_nats
from tests.conftest import _start, _stop

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def tls_server(base: Path, name: str, tls: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    config = base / f"{name}.conf"
    config.write_text(json.dumps({"tls": {"cert_file": str(tls / "server.crt"),
                                          "key_file": str(tls / "server.key")}}))
    port = free_port()
    proc = _start(nats_command("127.0.0.1", port, base / name, config, name=name), "127.0.0.1", port, name,
                  base / f"{name}.log")
    try:
        yield port, proc
    finally:
        proc.send_signal(signal.SIGCONT)
        _stop(proc)


async def test_a_tls_connection_moves_off_a_silent_server_within_seconds(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    ensure_demo_certificates(tls, ["127.0.0.1"])
    with tls_server(tmp_path, "first", tls) as (first, first_proc), \
            tls_server(tmp_path, "second", tls) as (second, _):
        nc = await connect_nats([f"tls://127.0.0.1:{first}", f"tls://127.0.0.1:{second}"], "tests",
                                NatsAuth(ca_file=str(tls / "ca.crt")))
        try:
            assert nc.connected_url is not None and nc.connected_url.port == first
            await nc.flush()
            first_proc.send_signal(signal.SIGSTOP)
            paused = time.monotonic()
            while not (nc.is_connected and nc.connected_url is not None and nc.connected_url.port == second):
                assert time.monotonic() - paused < 10, "still on the silent server after 10 s"
                await asyncio.sleep(0.1)
            got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            async def on_message(msg) -> None:  # type: ignore[no-untyped-def]
                got.set_result(msg.data)

            await nc.subscribe("hello", cb=on_message)
            await nc.publish("hello", b"from the second server")
            assert await asyncio.wait_for(got, 5) == b"from the second server"
        finally:
            first_proc.send_signal(signal.SIGCONT)
            await nc.close()
