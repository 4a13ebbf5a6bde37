"""The keyhole client: hostlist expansion, signing, and the bash block run for real against a stub server."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bwvisu_common import keyhole_client
from bwvisu_common.keyhole_client import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    KeyholeError,
    canonical,
    expand_hostlist,
    exports,
    job_nodes,
    request_ports,
    sign,
)
from bwvisu_common.keyhole_script import keyhole_block


@pytest.mark.parametrize(("spec", "hosts"), [
    ("cn0", ["cn0"]),
    ("cn[0-3,7],gpu[01-02]", ["cn0", "cn1", "cn2", "cn3", "cn7", "gpu01", "gpu02"]),
    ("a,b,c", ["a", "b", "c"]),
    ("n[008-011]", ["n008", "n009", "n010", "n011"]),
    ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ("cn[9-10].ib", ["cn9.ib", "cn10.ib"]),
    (" cn[1] ", ["cn1"]),
])
def test_hostlist_expands_like_slurm(spec: str, hosts: list[str]) -> None:
    assert expand_hostlist(spec) == hosts


@pytest.mark.parametrize("bad", ["cn[0-", "cn]0[", "cn[a-b]", "cn[3-1]"])
def test_malformed_hostlist_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError):
        expand_hostlist(bad)


def test_job_nodes_puts_the_script_node_first_and_applies_the_suffix() -> None:
    assert job_nodes("cn[0-2]", "cn1", ".ib") == ["cn1.ib", "cn0.ib", "cn2.ib"]
    assert job_nodes("cn[0-1]", "", "") == ["cn0", "cn1"]


def test_signature_covers_method_path_timestamp_and_body() -> None:
    token = b"t" * 32
    base = sign(token, "POST", "/v1/jobs/a/ports", "100", b"{}")
    expected = hmac.new(token, b"POST\n/v1/jobs/a/ports\n100\n{}", hashlib.sha256).hexdigest()
    assert base == expected
    assert canonical("post", "/p", "1", b"x") == b"POST\n/p\n1\nx"
    for changed in (sign(token, "PUT", "/v1/jobs/a/ports", "100", b"{}"),
                    sign(token, "POST", "/v1/jobs/b/ports", "100", b"{}"),
                    sign(token, "POST", "/v1/jobs/a/ports", "101", b"{}"),
                    sign(token, "POST", "/v1/jobs/a/ports", "100", b"{ }"),
                    sign(b"u" * 32, "POST", "/v1/jobs/a/ports", "100", b"{}")):
        assert changed != base


TOKEN = "0123456789abcdef" * 4
CUT = -1  # a stub "status": the answer is cut short


class _Stub(BaseHTTPRequestHandler):
    answers: list[tuple[int, dict[str, object]]] = []
    seen: list[dict[str, object]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = hmac.compare_digest(
            sign(TOKEN.encode(), "POST", self.path, self.headers[TIMESTAMP_HEADER], body),
            self.headers[SIGNATURE_HEADER])
        self.seen.append({"path": self.path, "signed": ok, "body": json.loads(body)})
        code, answer = self.answers.pop(0) if self.answers else (200, {})
        data = json.dumps(answer).encode()
        self.send_response(code if code > 0 else 200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if code == CUT:  # the answer is lost half-way: the connection drops
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    _Stub.answers, _Stub.seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run_block(servers: list[str], after: str = 'echo "$KEYHOLE_PORT0 $KEYHOLE_GATEWAY0 '
               '$KEYHOLE_EXTERNAL_PORT0 $KEYHOLE_PORT1"; env',
               session_secret: str = "") -> subprocess.CompletedProcess[str]:
    block = keyhole_block(2, job_id="job1", token=TOKEN, servers=servers, hostname_suffix="-ib",
                          session_secret=session_secret)
    script = f"#!/bin/bash\nset -u\n{block}\n{after}\n"
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_NODELIST": "cn[0-1]", "SLURMD_NODENAME": "cn1"}
    return subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60)


FORWARDS = {"forwards": [
    {"internal-port": 20001, "external-port": 20101, "external-ip": "10.0.0.30", "gateway": "gw0"},
    {"internal-port": 20002, "external-port": 20102, "external-ip": "10.0.0.30", "gateway": "gw0"},
]}


def test_block_exports_the_forwards_and_keeps_the_token_out_of_the_environment(stub: str) -> None:
    _Stub.answers = [(503, {"detail": "busy"}), (200, FORWARDS)]
    # The first server is down: the client moves on to the next, and retries the 503.
    proc = _run_block(["http://127.0.0.1:9", stub])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "20001 10.0.0.30 20101 20002"
    assert TOKEN not in proc.stdout
    assert [s["signed"] for s in _Stub.seen] == [True, True]
    assert _Stub.seen[0]["path"] == "/v1/jobs/job1/ports"
    assert _Stub.seen[0]["body"]["nodes"] == ["cn1-ib", "cn0-ib"]  # type: ignore[index]
    assert _Stub.seen[0]["body"]["nonce"] != _Stub.seen[1]["body"]["nonce"]  # type: ignore[index]


def test_token_appears_only_inside_its_heredoc() -> None:
    block = keyhole_block(1, job_id="j", token=TOKEN, servers=["http://x"], hostname_suffix="")
    assert [line for line in block.splitlines() if TOKEN in line] == [TOKEN]


def test_a_refusal_stops_the_job_with_a_clear_message(stub: str) -> None:
    _Stub.answers = [(403, {"detail": "node cn9 is not one of the job's nodes"})]
    proc = _run_block([stub], after="echo SHOULD-NOT-RUN")
    assert proc.returncode == 1
    assert "SHOULD-NOT-RUN" not in proc.stdout
    assert "node cn9 is not one of the job's nodes" in proc.stderr
    assert "stopping the job" in proc.stderr
    assert len(_Stub.seen) == 1  # a permanent refusal is not retried


@pytest.mark.parametrize("lost", [(CUT, FORWARDS), (502, {"detail": "proxy lost the upstream"})])
def test_an_answer_lost_on_the_way_is_asked_for_again(stub: str, lost: tuple[int, dict[str, object]]) -> None:
    # keyhole-api answers a retry of a standing grant with the same ports; the client must ask.
    _Stub.answers = [lost, (200, FORWARDS)]
    proc = _run_block([stub])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "20001 10.0.0.30 20101 20002"
    assert len(_Stub.seen) == 2 and all(s["signed"] for s in _Stub.seen)

SESSION = "feedface" * 8


def test_the_session_secret_reaches_the_jobs_environment_and_no_command_line(stub: str) -> None:
    _Stub.answers = [(200, FORWARDS)]
    # What every process of the job sees: its environment, and every command line while it runs.
    after = 'env; (echo "$BWVISU_SESSION_SECRET" | sha256sum); ps -eo args'
    proc = _run_block([stub], after=after, session_secret=SESSION)
    assert proc.returncode == 0, proc.stderr
    assert f"BWVISU_SESSION_SECRET={SESSION}" in proc.stdout.splitlines()
    assert f"TOKEN={TOKEN}" not in proc.stdout and TOKEN not in proc.stdout
    command_lines = proc.stdout.split(hashlib.sha256(f"{SESSION}\n".encode()).hexdigest(), 1)[1]
    assert SESSION not in command_lines
    assert SESSION not in proc.stderr


def test_without_a_session_secret_nothing_is_exported(stub: str) -> None:
    _Stub.answers = [(200, FORWARDS)]
    proc = _run_block([stub], after="env")
    assert proc.returncode == 0, proc.stderr
    assert "BWVISU_SESSION_SECRET" not in proc.stdout


def test_the_session_secret_is_only_inside_the_heredoc_and_must_be_plain() -> None:
    block = keyhole_block(1, job_id="j", token=TOKEN, servers=["http://x"], hostname_suffix="",
                          session_secret=SESSION)
    assert [line for line in block.splitlines() if SESSION in line] == [SESSION]
    with pytest.raises(ValueError, match="session secret"):
        keyhole_block(1, job_id="j", token=TOKEN, servers=["http://x"], hostname_suffix="",
                      session_secret="x'; reboot")
    with pytest.raises(KeyholeError, match="session secret"):
        exports(FORWARDS, "a b")
    assert exports(FORWARDS, SESSION)[-1] == f"export BWVISU_SESSION_SECRET={SESSION}"


def test_a_heartbeat_speaks_for_the_gateway_its_subject_names() -> None:
    from bwvisu_common.heartbeats import heartbeat_gateway, heartbeat_subject

    assert heartbeat_gateway(heartbeat_subject("gw1")) == "gw1"
    assert heartbeat_gateway("bwvisu.gateways.gw1.other") == ""
    assert heartbeat_gateway("bwvisu.gateways.heartbeat") == ""


@pytest.fixture
def unanswered() -> Iterator[str]:
    """A server that takes no connection, as one whose link went down: its accept queue is full,
    so the kernel drops further SYNs and a connect waits."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):  # fill the queue; the connects that no longer fit wait in the background
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(address)
        fillers.append(s)
    time.sleep(0.2)
    yield f"http://127.0.0.1:{address[1]}"
    for s in fillers:
        s.close()
    listener.close()


def test_a_server_that_takes_no_connection_is_left_after_the_connect_timeout(
        stub: str, unanswered: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyhole_client, "CONNECT_TIMEOUT", 0.5)
    _Stub.answers = [(200, {"forwards": []})]
    started = time.monotonic()
    answer = request_ports([unanswered, stub], "job1", TOKEN.encode(), 1, ["cn0"],
                           deadline=time.monotonic() + 60, log=io.StringIO())
    assert answer == {"forwards": []}
    assert time.monotonic() - started < 10, "the next server was asked only after the answer timeout"
