"""NATS or etcd dying under a running bwvisu: nothing reports a false outcome, and submits
work again once `bwvisu up` has restarted it. On a bwvisu of its own, so that the session's
shared one is not disturbed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bwvisu_cli.testbed import isolated_system, runner_api_client_args
from bwvisu_common.settings import load_settings
from tests.e2e.conftest import Minicluster

pytestmark = pytest.mark.timeout(600)

SLEEP = {"uid": "alice", "template-name": "sleep", "variables": {"seconds": "1", "runtime": "1"}}


@pytest.fixture(scope="module")
def own_system(minicluster: Minicluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_system(minicluster.config_path, tmp_path_factory.mktemp("recovery")) as config:
        yield config


def child_pid(config: Path, name: str) -> int:
    status = json.loads((Path(load_settings(config).state_dir) / "up.json").read_text())
    return next(p["pid"] for p in status["processes"] if p["name"] == name)


@pytest.mark.parametrize("server", ["nats-server", "etcd"])
def test_a_killed_server_comes_back_and_submits_work_again(own_system: Path, server: str) -> None:
    with httpx.Client(**runner_api_client_args(load_settings(own_system)), timeout=90) as client:
        assert client.post("/jobs", json=SLEEP).status_code == 200
        os.kill(child_pid(own_system, server), signal.SIGKILL)
        answers = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                answer = client.post("/jobs", json=SLEEP)
            except httpx.TransportError:
                answers.append("no answer")
            else:
                answers.append(answer.status_code)
                if answer.status_code == 200:
                    job = client.get(f"/jobs/{answer.json()['job-id']}").json()
                    assert job["details"] != "" and job["uid"] == "alice"
                    break
            time.sleep(1)
        # While it is gone: an honest 503 (or no answer), never a 500 or a made-up outcome.
        assert answers[-1] == 200, answers
        assert set(answers[:-1]) <= {503, "no answer"}, answers
