"""One set of expectations for runner-api's UserDirectory and JobLogs: the fakes, and the NATS
clients answered by scheduler-adapter's query handlers (a real nats-server; the cluster behind
them is a FakeCommandRunner speaking `id` and `tail` as coreutils do)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from bwvisu_common.adapters.jetstream import connect_nats
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.templates import job_log_path
from runner_api.adapters.nats_requests import NatsJobLogs, NatsUserDirectory
from runner_api.ports import JobLogs, UserDirectory
from scheduler_adapter import queries
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.domain.users import UserPolicy
from scheduler_adapter.users import UserGate
from tests.conftest import Server
from tests.fakes.command_runner import FakeCommandRunner, fake_id, fake_tail
from tests.fakes.job_logs import FakeJobLogs
from tests.fakes.users import FakeUserDirectory

MIDDLEWARE = "bwvisu"
HOME = "/home"


@dataclass
class Cluster:
    """The two ports under test and the levers a test pulls on the cluster behind them."""

    users: UserDirectory
    logs: JobLogs
    add_user: Callable[[str], None]
    write_log: Callable[[str, str, str], None]
    go_down: Callable[[], None]


def job() -> str:
    return uuid.uuid4().hex[:12]


class ClusterQueriesContract:
    @pytest.fixture
    async def cluster(self) -> AsyncIterator[Cluster]:
        raise NotImplementedError
        yield

    async def test_a_user_of_the_cluster_may_run_jobs(self, cluster) -> None:
        cluster.add_user("alice")
        assert await cluster.users.refusal("alice") is None

    async def test_an_unknown_user_is_refused_by_name(self, cluster) -> None:
        cluster.add_user("alice")
        assert await cluster.users.refusal("mallory") == "no such user on the cluster: mallory"

    async def test_a_name_no_user_can_have_is_an_unknown_user(self, cluster) -> None:
        assert await cluster.users.refusal("../etc") == "no such user on the cluster: ../etc"

    async def test_the_middlewares_own_account_is_refused_with_a_reason(self, cluster) -> None:
        refusal = await cluster.users.refusal(MIDDLEWARE)
        assert refusal is not None and MIDDLEWARE in refusal and "no such user" not in refusal

    async def test_the_log_tail_is_its_last_lines(self, cluster) -> None:
        a = job()
        cluster.write_log("alice", a, "one\ntwo\nthree\n")
        assert await cluster.logs.tail("alice", a, 2) == "two\nthree\n"
        assert await cluster.logs.tail("alice", a, 10) == "one\ntwo\nthree\n"

    async def test_a_log_not_written_yet_is_empty(self, cluster) -> None:
        assert await cluster.logs.tail("alice", job(), 5) == ""

    async def test_a_log_is_read_as_its_owner_only(self, cluster) -> None:
        a = job()
        cluster.write_log("alice", a, "alice's output\n")
        assert await cluster.logs.tail("bob", a, 5) == ""

    async def test_a_cluster_nobody_can_reach_is_unavailable(self, cluster) -> None:
        cluster.add_user("alice")
        cluster.write_log("alice", a := job(), "x\n")
        cluster.go_down()
        with pytest.raises(DependencyUnavailable):
            await cluster.users.refusal("alice")
        with pytest.raises(DependencyUnavailable):
            await cluster.logs.tail("alice", a, 5)


class TestFakes(ClusterQueriesContract):
    @pytest.fixture
    async def cluster(self) -> AsyncIterator[Cluster]:
        users = FakeUserDirectory([], refused={MIDDLEWARE: f"{MIDDLEWARE} is the middleware's own account"})
        logs = FakeJobLogs()

        def go_down() -> None:
            users.down = logs.down = True

        yield Cluster(users, logs, users.users.add, logs.write, go_down)


@pytest.mark.integration
class TestNatsClients(ClusterQueriesContract):
    @pytest.fixture
    async def cluster(self, nats_server: Server) -> AsyncIterator[Cluster]:
        known: dict[str, tuple[int, list[str]]] = {MIDDLEWARE: (1500, [MIDDLEWARE])}
        files: dict[str, str] = {}
        runner = FakeCommandRunner()
        runner.on(["id", "--", "*"], fake_id(known))
        runner.on(["sudo", "-n", "-u", "*", "tail", "-n", "*", "--", "*"], fake_tail(files))
        slurm = SlurmCli(runner)
        gate = UserGate(slurm, UserPolicy(middleware_accounts={MIDDLEWARE}))
        server = await connect_nats([nats_server.url], "scheduler-adapter")
        client = await connect_nats([nats_server.url], "runner-api")
        subscriptions = await queries.serve(server, slurm, gate, HOME)
        await server.flush()  # the server knows the subscriptions before anyone asks

        def add_user(uid: str) -> None:
            known[uid] = (2000 + len(known), [uid])

        def write_log(uid: str, job_id: str, text: str) -> None:
            files[job_log_path(HOME, uid, job_id)] = text

        def go_down() -> None:
            runner.down = True

        try:
            yield Cluster(NatsUserDirectory(client, timeout=5), NatsJobLogs(client, timeout=5),
                          add_user, write_log, go_down)
        finally:
            for sub in subscriptions:
                await sub.unsubscribe()
            await client.drain()
            await server.drain()

    async def test_no_scheduler_adapter_running_is_unavailable(self, nats_server: Server) -> None:
        client = await connect_nats([nats_server.url], "runner-api")
        try:
            with pytest.raises(DependencyUnavailable):
                await NatsUserDirectory(client, timeout=2).refusal("alice")
            with pytest.raises(DependencyUnavailable):
                await NatsJobLogs(client, timeout=2).tail("alice", job(), 5)
        finally:
            await client.drain()
