"""NATS and etcd of a `bwvisu up` system: no credential, no access; each identity only its own part."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aetcd
import nats
import nats.errors
import pytest

from bwvisu_cli.servers import free_port
from bwvisu_cli.testbed import stop_up
from bwvisu_common import events as ev
from bwvisu_common.adapters.etcd import EtcdStateStore
from bwvisu_common.adapters.etcd_election import EtcdElection
from bwvisu_common.adapters.etcd_tls import TlsEtcdClient
from bwvisu_common.adapters.jetstream import STREAM, JetStreamEventStore, NatsAuth, connect_nats, job_subject
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.state_keys import WATCHER_ROLE, submission_role
from tests.samples import NO_METRICS_PORTS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    base = tmp_path_factory.mktemp("locked")
    nats_port, etcd_port = free_port(), free_port()
    config = base / "bwvisu.json"
    config.write_text(json.dumps({
        "bwvisu-home-prefix": "/home",
        "command-nodes": [{"ip": "127.0.0.1"}],
        "gateway-nodes": [{"internal-ip": "127.0.0.1", "external-ip": "127.0.0.1", "name": "gwa"},
                          {"internal-ip": "127.0.0.2", "external-ip": "127.0.0.2", "name": "gwb"}],
        "etcd-servers": [f"127.0.0.1:{etcd_port}"], "nats-servers": [f"nats://127.0.0.1:{nats_port}"],
        "state-dir": "state", "runner-api": {"port": free_port()}, "keyhole-api": {"port": free_port()},
        "web": {"port": free_port()}, "metrics": NO_METRICS_PORTS,
    }))
    log = base / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "bwvisu_cli", "--config", str(config), "up"],
                              stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not (base / "state" / "up.json").exists():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield {"nats": f"nats://127.0.0.1:{nats_port}", "etcd": etcd_port,
               "creds": base / "state" / "credentials"}
    finally:
        stop_up(up)


def password(system: dict[str, object], identity: str) -> str:
    return (Path(str(system["creds"])) / f"{identity}.password").read_text().strip()


def ca(system: dict[str, object]) -> str:
    return str(Path(str(system["creds"])) / "tls" / "ca.crt")


def as_identity(system: dict[str, object], identity: str) -> NatsAuth:
    return NatsAuth(user=identity, password=password(system, identity), ca_file=ca(system))


def test_credential_files_are_private(system):
    files = list(Path(str(system["creds"])).glob("*.password"))
    assert {f.stem for f in files} >= {"runner-api", "gateway-gwa", "gateway-gwb", "root"}
    assert all(f.stat().st_mode & 0o077 == 0 for f in files)
    assert (Path(str(system["creds"])).parent / "nats.conf").stat().st_mode & 0o077 == 0


async def test_nats_refuses_a_client_without_credentials(system):
    with pytest.raises(DependencyUnavailable, match="[Aa]uthorization"):
        nc = await connect_nats([str(system["nats"])], "anonymous", NatsAuth(ca_file=ca(system)))
        await nc.close()


async def test_nats_and_etcd_speak_only_tls(system):
    with pytest.raises(DependencyUnavailable):
        nc = await connect_nats([str(system["nats"])], "runner-api",
                                NatsAuth(user="runner-api", password=password(system, "runner-api")))
        await nc.close()
    with pytest.raises(DependencyUnavailable):
        store = await EtcdStateStore.connect("127.0.0.1", int(str(system["etcd"])), user="runner-api",
                                             password=password(system, "runner-api"))
        await store.close()


async def test_etcd_refuses_a_client_without_credentials(system):
    client = TlsEtcdClient(host="127.0.0.1", port=int(str(system["etcd"])), timeout=5)
    client.ca_pem = Path(ca(system)).read_bytes()
    try:
        with pytest.raises(aetcd.ClientError, match="user name is empty|permission denied"):
            await client.get(b"/bwvisu/projection-seq")
    finally:
        await client.close()


async def test_etcd_gives_each_identity_only_its_prefixes(system):
    port = int(str(system["etcd"]))
    gateway = await EtcdStateStore.connect("127.0.0.1", port, user="gateway-gwa",
                                           password=password(system, "gateway-gwa"), ca_file=ca(system))
    keyhole = await EtcdStateStore.connect("127.0.0.1", port, user="keyhole-api",
                                           password=password(system, "keyhole-api"), ca_file=ca(system))
    try:
        with pytest.raises(DependencyUnavailable, match="permission denied"):
            await gateway.get_secret("token/some-job")  # a job's token is not a gateway's business
        assert await keyhole.get_secret("token/some-job") is None
        with pytest.raises(DependencyUnavailable, match="permission denied"):
            await keyhole.put_secret("token/some-job", b"forged", ttl=60)
        with pytest.raises(DependencyUnavailable, match="permission denied"):
            await gateway.wipe_projection()
    finally:
        await gateway.close()
        await keyhole.close()


async def test_a_gateway_agent_appends_only_its_own_events(system):
    nc = await connect_nats([str(system["nats"])], "gateway-agent-gwa", as_identity(system, "gateway-gwa"))
    try:
        own = JetStreamEventStore(nc, source="gateway-gwa")
        job = ev.new_job_id()
        seq = await own.append([ev.PortClosed(job_id=job, external_port=20001, gateway="gwa")])
        assert [s for s, _ in await own.read_job(job)] == [seq]
        for other in ("gateway-gwb", "runner-api", "keyhole-api", "scheduler-adapter"):
            forged = JetStreamEventStore(nc, source=other, timeout=1.5)
            with pytest.raises(DependencyUnavailable):
                await forged.append([ev.PortClosed(job_id=job, external_port=20002, gateway="gwa")])
        # A raw publish beside the event store is dropped by the server too.
        await nc.publish(job_subject(job, "runner-api"), ev.encode(ev.JobCancelRequested(job_id=job)))
        # The server takes one connection's messages in order: had it stored the raw publish, it
        # would come before this event, which the agent may append.
        later = await own.append([ev.PortClosed(job_id=job, external_port=20003, gateway="gwa")])
        assert [s for s, _ in await own.read_job(job)] == [seq, later]
        with pytest.raises(nats.errors.Error):  # nor may it change the stream
            await nc.jetstream(timeout=1.5).delete_stream(STREAM)
    finally:
        await nc.close()


async def test_the_web_identity_cannot_append_at_all(system):
    nc = await connect_nats([str(system["nats"])], "web-portal", as_identity(system, "web"))
    try:
        with pytest.raises(DependencyUnavailable):
            await JetStreamEventStore(nc, source="web", timeout=1.5).append(
                [ev.JobCancelRequested(job_id=ev.new_job_id())])
    finally:
        await nc.close()


async def test_what_a_gateway_agent_says_beyond_its_part_is_not_read(system):
    """NATS cannot see event types: a gateway's JobEnded, or a PortsForwarded in another gateway's
    name, goes into the stream on its own subject, and every reader skips it."""
    nc = await connect_nats([str(system["nats"])], "gateway-agent-gwa", as_identity(system, "gateway-gwa"))
    try:
        gateway = JetStreamEventStore(nc, source="gateway-gwa")
        job = ev.new_job_id()
        kept = await gateway.append([ev.ForwardsRemoved(job_id=job, gateway="gwa")])
        await gateway.append([ev.JobEnded(job_id=job, slurm_state="COMPLETED", exit_code=0)])
        await gateway.append([ev.ForwardsRemoved(job_id=job, gateway="gwb")])
        assert [(s, type(e).__name__) for s, e in await gateway.read_job(job)] == [(kept, "ForwardsRemoved")]
    finally:
        await nc.close()


async def test_no_identity_may_redefine_another_services_durable_consumer(system):
    nc = await connect_nats([str(system["nats"])], "gateway-agent-gwa", as_identity(system, "gateway-gwa"))
    try:
        js = nc.jetstream(timeout=1.5)
        for durable in ("scheduler-adapter", "gateway-agent-gwb"):
            with pytest.raises(nats.errors.Error):  # e.g. a filter that never delivers JobSubmitted
                await js.add_consumer(STREAM, durable_name=durable, filter_subject="bwvisu.jobs.none.>")
        info = await js.add_consumer(STREAM, durable_name="gateway-agent-gwa",
                                     filter_subject="bwvisu.jobs.>")  # its own stays its to make
        assert info.name == "gateway-agent-gwa"
    finally:
        await nc.close()


async def test_only_scheduler_adapters_take_part_in_their_elections(system):
    port = int(str(system["etcd"]))

    def election(identity: str) -> EtcdElection:
        return EtcdElection([("127.0.0.1", port)], f"test-{identity}", user=identity,
                            password=password(system, identity), ca_file=ca(system))

    replica, other = election("scheduler-adapter"), election("keyhole-api")
    try:
        deadline = time.monotonic() + 30
        while await replica.holder(WATCHER_ROLE) is None:  # the system's own scheduler-adapter
            assert time.monotonic() < deadline, "no scheduler-adapter holds the watcher role"
            await asyncio.sleep(0.2)
        assert await replica.try_hold(WATCHER_ROLE) is None
        claim = await replica.try_hold(submission_role("some-job"))
        assert claim is not None and claim.held()
        await replica.resign(claim)
        with pytest.raises(DependencyUnavailable, match="permission denied"):
            await other.try_hold(submission_role("some-job"))
    finally:
        await replica.close()
        await other.close()
