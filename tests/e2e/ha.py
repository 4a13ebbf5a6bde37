"""bwvisu on the minicluster's middleware nodes mw0-mw2 (`minicluster up --ha`), for the chaos test.

Each node runs `bwvisu up` inside its namespace: a NATS server and an etcd member of one cluster,
and every service. The configs are the nodes' own (`cluster.json` "ha-configs") with a state dir
and shared credentials of this run, and a job tag of their own. Links a test takes down are
restored by `restore_links()`, which the fixture also calls in its finally.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bwvisu_cli.servers import listening
from bwvisu_cli.testbed import BWVISU, stop_up
from bwvisu_common.settings import Settings, load_settings
from tests.e2e.conftest import Minicluster, run_minicluster

MIDDLEWARE = ("mw0", "mw1", "mw2")


@dataclass
class HaNode:
    name: str
    ip: str
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.name, BWVISU, "--config", str(self.config_path), "up"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, timeout: float = 60) -> None:
        if self.process is not None:
            stop_up(self.process, timeout)


@dataclass
class HaSystem:
    minicluster: Minicluster
    nodes: list[HaNode]
    credentials: Path
    links_down: set[str] = field(default_factory=set)

    def node(self, name: str) -> HaNode:
        (found,) = [n for n in self.nodes if n.name == name]
        return found

    @property
    def settings(self) -> Settings:
        return self.nodes[0].settings

    def pids(self, package: str, node: str | None = None) -> list[int]:
        """Pids of `python -m <package>` of this system (on one node, or any)."""
        configs = [n.config_path for n in self.nodes if node in (None, n.name)]
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if package.encode() in argv and any(str(c).encode() in argv for c in configs):
                found.append(int(proc.name))
        return found

    def link(self, host: str, up: bool) -> None:
        """A node's link to the bridge (its veth on the host side), down or up again."""
        subprocess.run(["ip", "link", "set", f"bwv-{host}", "up" if up else "down"], check=True)
        (self.links_down.discard if up else self.links_down.add)(host)

    def restore_links(self) -> None:
        for host in sorted(self.links_down):
            with contextlib.suppress(subprocess.CalledProcessError):
                self.link(host, up=True)


def _node_config(source: Path, base: Path, credentials: Path, tag: str) -> dict[str, object]:
    config = json.loads(source.read_text())
    config["state-dir"] = str(base / "state")
    config["credentials"] = {"dir": str(credentials)}
    config["scheduler"] = {**dict(config.get("scheduler", {})), "job-tag": tag}
    return config


def _wait(check, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.3)


def _wait_serving(nodes: list[HaNode]) -> None:
    for node in nodes:
        api = node.settings.runner_api

        def serving(api=api, node=node) -> bool:  # type: ignore[no-untyped-def]
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"bwvisu up on {node.name} ended:\n"
                                   + node.log_path.read_text(errors="replace")[-3000:])
            return listening(api.host, api.port)

        _wait(serving, f"runner-api on {node.name} is not up", 180)


@contextlib.contextmanager
def ha_system(minicluster: Minicluster, base: Path) -> Iterator[HaSystem]:
    """The middleware nodes up (left for reuse with BWVISU_KEEP_MINICLUSTER=1), bwvisu on each."""
    proc = run_minicluster("up", "--ha")
    assert proc.returncode == 0, f"minicluster up --ha failed:\n{proc.stdout}{proc.stderr}"
    facts = json.loads((minicluster.state_dir / "cluster.json").read_text())
    hosts = {h["name"]: h["ip"] for h in facts["hosts"]}
    credentials = base / "credentials"
    tag = f"bwvchaos{secrets.token_hex(3)}"
    nodes = []
    for name in MIDDLEWARE:
        (base / name).mkdir(parents=True, exist_ok=True)
        path = base / name / "bwvisu.json"
        source = Path(facts["ha-configs"][name])
        path.write_text(json.dumps(_node_config(source, base / name, credentials, tag)))
        nodes.append(HaNode(name, hosts[name], path, base / name / "up.log"))
    system = HaSystem(minicluster, nodes, credentials)
    try:
        # The first node makes the shared credentials; the others join once they exist. They
        # start together: the job stream has three replicas, so it needs all three NATS servers.
        nodes[0].start()
        _wait(lambda: (credentials / "tls" / "ca.crt").exists(), "mw0 made no credentials", 60)
        for node in nodes[1:]:
            node.start()
        _wait_serving(nodes)
        yield system
    finally:
        system.restore_links()
        # The namespaces stay with the minicluster (removed by its `down`, kept with
        # BWVISU_KEEP_MINICLUSTER=1): once bwvisu stopped they hold nothing.
        for node in nodes:
            node.stop()
