"""`bwvisu job <id>` and `bwvisu jobs` against a real nats-server and etcd."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from bwvisu_cli.main import main
from bwvisu_common import events as ev
from tests.conftest import Server

pytestmark = pytest.mark.integration

FWD = [ev.Forward(internal_port=20001, external_port=21001)]


def config(tmp_path: Path, nats: Server, etcd: Server) -> str:
    path = tmp_path / "bwvisu.json"
    path.write_text(json.dumps({
        "bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "127.0.0.1"}],
        "nats-servers": [nats.url], "etcd-servers": [f"{etcd.host}:{etcd.port}"],
        "state-dir": str(tmp_path), "credentials": {"required": False, "tls": False},
    }))
    return str(path)


def bwvisu(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as done:
        return int(done.code or 0)
    raise AssertionError("bwvisu did not exit")


async def test_job_prints_the_history_in_order_with_times_and_the_jobs_facts(
        event_store, etcd_server, nats_server, tmp_path, capsys):
    path = config(tmp_path, nats_server, etcd_server)
    job_id, other = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    await event_store.append([ev.JobSubmitted(job_id=job_id, uid="alice", template_name="xpra-desktop",
                                              variables={"runtime": "30"})])
    await event_store.append([ev.JobSubmitted(job_id=other, uid="bob", template_name="web-app")])
    for event in (ev.JobQueued(job_id=job_id, slurm_id="4711", command_node="login0"),
                  ev.JobStarted(job_id=job_id, nodes=["cn0"]),
                  ev.PortsForwarded(job_id=job_id, gateway="gw0", forwards=FWD),
                  ev.JobEnded(job_id=job_id, slurm_state="COMPLETED", exit_code=0)):
        await event_store.append([event])
    code = await asyncio.to_thread(bwvisu, "job", job_id, "--config", path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"job {job_id}: alice xpra-desktop" in out
    assert "slurm id:  4711 (via login0)" in out and "node:      cn0" in out and "gateway:   gw0" in out
    assert "finished:  ended: COMPLETED, exit code 0" in out
    events = [line.split()[4] for line in out.splitlines() if line.startswith("  20")]
    assert events == ["JobSubmitted", "JobQueued", "JobStarted", "PortsForwarded", "JobEnded"]
    assert other not in out and "bob" not in out, "only this job's events"


async def test_an_unknown_job_is_named_and_exits_non_zero(event_store, etcd_server, nats_server,
                                                          tmp_path, capsys):
    path = config(tmp_path, nats_server, etcd_server)
    for job_id in ("0123456789abcdef", "job.*"):
        code = await asyncio.to_thread(bwvisu, "job", job_id, "--config", path)
        err = capsys.readouterr().err
        assert code == 1 and f"no job {job_id!r}" in err


async def test_jobs_lists_the_read_model_filtered(event_store, etcd_server, nats_server, tmp_path, capsys):
    path = config(tmp_path, nats_server, etcd_server)
    user = f"u{uuid.uuid4().hex[:8]}"
    ids = [uuid.uuid4().hex[:16] for _ in range(3)]
    for job_id in ids:
        await event_store.append([ev.JobSubmitted(job_id=job_id, uid=user, template_name="xpra-desktop")])
    await event_store.append([ev.JobStarted(job_id=ids[0], nodes=["cn0"]),
                              ev.PortsForwarded(job_id=ids[0], gateway="gw0", forwards=FWD)])
    assert await asyncio.to_thread(bwvisu, "rebuild-state", "--config", path) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(bwvisu, "jobs", "--user", user, "--config", path) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["JOB", "USER", "APP", "STATE"]
    assert {line.split()[0] for line in table[1:-1]} == set(ids)
    assert table[-1].startswith("jobs 1-3 of 3 (page 1 of 1)")
    assert await asyncio.to_thread(bwvisu, "jobs", "--user", user, "--gateway", "gw0", "--state", "running",
                                   "--config", path) == 0
    (_, row, _) = capsys.readouterr().out.splitlines()
    assert row.split() == [ids[0], user, "xpra-desktop", "running", "-", "cn0", "gw0", row.split()[-1]]
    assert await asyncio.to_thread(bwvisu, "jobs", "--user", user, "--limit", "2", "--config", path) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "--page 2 for more" in lines[-1]
