"""Installing the Debian packages the minicluster needs, only when missing."""
from __future__ import annotations

import os
import subprocess

from .shell import MiniclusterError, say
from .topology import PACKAGES


def missing(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *packages],
                          capture_output=True, text=True)
    installed = {line.split()[0] for line in proc.stdout.splitlines()
                 if len(line.split()) >= 2 and line.split()[1].startswith("ii")}
    return [p for p in packages if p not in installed]


def ensure() -> None:
    todo = missing()
    if not todo:
        return
    say(f"installing Debian packages: {' '.join(todo)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-q", "-y"]
    subprocess.run([*apt, "update"], env=env, capture_output=True, text=True)
    proc = subprocess.run([*apt, "install", "--no-install-recommends", *todo],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0 or missing():
        raise MiniclusterError(f"apt-get install failed: {proc.stderr.strip()[-2000:]}")
