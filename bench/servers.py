"""Start a throwaway nats-server and etcd for a benchmark run (the same commands `bwvisu up` uses)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bwvisu_cli.servers import etcd_command, free_port, nats_command, wait_listening


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, tuple[str, int]]]:
    """Yield (nats url, (etcd host, port)); both processes end with the block."""
    with tempfile.TemporaryDirectory(prefix="bwvisu-bench-") as tmp:
        base = Path(tmp)
        nats_port, etcd_port = free_port(), free_port()
        procs = [
            subprocess.Popen(nats_command("127.0.0.1", nats_port, base / "js"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen(etcd_command("127.0.0.1", etcd_port, free_port(), base / "etcd"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        try:
            wait_listening("127.0.0.1", nats_port, "nats-server")
            wait_listening("127.0.0.1", etcd_port, "etcd")
            yield f"nats://127.0.0.1:{nats_port}", ("127.0.0.1", etcd_port)
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=10)
