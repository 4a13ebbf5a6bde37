"""Three-member NATS and etcd clusters as local processes, for tests that kill one of them."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bwvisu_cli.access import NATS_PINGS
from bwvisu_cli.servers import (
    ClusterMember,
    etcd_cluster_command,
    local_members,
    nats_cluster_command,
    wait_listening,
)

Command = Callable[[ClusterMember, list[ClusterMember], Path], list[str]]


@dataclass
class LocalCluster:
    """Members started together (each waits for its peers); `kill` one as a crash would."""

    what: str
    members: list[ClusterMember]
    base: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, command: Command) -> None:
        for m in self.members:
            log = (self.base / f"{m.name}.log").open("ab")
            cmd = command(m, self.members, self.base / m.name)
            self.processes[m.name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        for m in self.members:
            proc = self.processes[m.name]
            try:
                wait_listening(m.host, m.port, f"{self.what} {m.name}", alive=lambda p=proc: p.poll() is None)
            except Exception:
                self.stop()
                raise RuntimeError(f"{m.name} did not start; its log:\n{self.log(m)[-3000:]}") from None

    def log(self, member: ClusterMember) -> str:
        return (self.base / f"{member.name}.log").read_text(errors="replace")

    def member_at(self, address: str) -> ClusterMember:
        """The member whose client address (host:port, or a URL ending in it) is `address`."""
        return next(m for m in self.members if address.rstrip("/").endswith(m.address))

    def kill(self, member: ClusterMember) -> None:
        """SIGKILL: no goodbye to clients or peers, as a crashed host gives none."""
        proc = self.processes[member.name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    @contextmanager
    def paused(self, member: ClusterMember) -> Iterator[None]:
        """SIGSTOP until the block ends: connections stay open and nothing answers, as behind a
        link that went down."""
        proc = self.processes[member.name]
        proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def nats_cluster(base: Path, size: int = 3) -> Iterator[LocalCluster]:
    """nats-servers with JetStream and routes to each other, on free loopback ports, pinging each
    other as `bwvisu up` configures them."""
    cluster = LocalCluster("nats-server", local_members(size, "nats"), base)
    base.mkdir(parents=True, exist_ok=True)
    config = base / "nats.conf"
    config.write_text(json.dumps(NATS_PINGS))
    cluster.start(lambda m, ms, d: nats_cluster_command(m, ms, d, config))
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def etcd_cluster(base: Path, size: int = 3) -> Iterator[LocalCluster]:
    """A new etcd cluster of `size` members on free loopback ports."""
    cluster = LocalCluster("etcd", local_members(size, "etcd"), base)
    cluster.start(lambda m, ms, d: etcd_cluster_command(m, ms, d))
    try:
        yield cluster
    finally:
        cluster.stop()
