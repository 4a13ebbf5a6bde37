"""Source-restricted forwards on the minicluster (`restrict-forwards-to-clients: true`).

Two small client namespaces on the minicluster's bridge stand for two client networks. After
the owner connects from one of them (recorded through runner-api's endpoint, as the portal's
Connect does), a connection to the job's forward from that address is served and one from the
other address is not; before any Connect, nobody gets through; the job's end removes every rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bwvisu_cli.testbed import runner_api_client_args, write_isolated_config
from tests.e2e.conftest import BwvisuSystem, Minicluster, portal_process, system_up
from tests.e2e.test_forwarding import (
    available,
    cancel,
    eventually,
    finished,
    rules_of,
    secret_of,
    submit,
    wait_job,
)

pytestmark = pytest.mark.timeout(600)

BRIDGE = "bwvbr0"
# Free on the bridge: the minicluster uses .1, .10-.11 (login), .20-.29 (compute), .30-.31 (gateways).
CLIENTS = {"bwvcl0": "10.200.0.241", "bwvcl1": "10.200.0.242"}

PROBE = textwrap.dedent("""
    import socket, sys
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as conn:
            conn.settimeout(3)
            conn.sendall(sys.argv[3].encode() + b"\\n")  # port-echo greets only its owner
            print("served", conn.recv(200).decode(errors="replace").strip())
    except OSError as exc:
        print("refused", type(exc).__name__)
""")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def _remove_client(ns: str) -> None:
    _run("ip", "netns", "del", ns)
    _run("ip", "link", "del", f"bwvc-{ns[-3:]}")


@pytest.fixture(scope="module")
def clients(minicluster: Minicluster) -> Iterator[dict[str, str]]:
    """The two client namespaces, removed afterwards even when the test fails."""
    try:
        for ns, ip in CLIENTS.items():
            _remove_client(ns)  # left over by a killed run
            veth = f"bwvc-{ns[-3:]}"
            for argv in (["ip", "netns", "add", ns],
                         ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                         ["ip", "link", "set", veth, "master", BRIDGE, "up"],
                         ["ip", "-n", ns, "link", "set", "lo", "up"],
                         ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"],
                         ["ip", "-n", ns, "link", "set", "eth0", "up"],
                         ["ip", "-n", ns, "route", "add", "default", "via", minicluster.host_ip]):
                proc = _run(*argv)
                assert proc.returncode == 0, f"{argv}: {proc.stderr}"
        yield CLIENTS
    finally:
        for ns in CLIENTS:
            _remove_client(ns)


@pytest.fixture(scope="module")
def restricted_system(minicluster: Minicluster, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[BwvisuSystem]:
    """A bwvisu of its own (ports, state, job tag) with the option on."""
    base = tmp_path_factory.mktemp("bwvisu-restricted")
    config_path = write_isolated_config(minicluster.config_path, base)
    config = json.loads(config_path.read_text())
    config["restrict-forwards-to-clients"] = True
    # A bundle for port-echo, so that its sessions have a Connect button and a connect URL.
    bundles = base / "bundles"
    bundles.mkdir()
    (bundles / "port-echo.app.json").write_text(json.dumps({
        "title": "Port echo", "description": "A TCP echo for tests.", "icon": "app",
        "template": "port-echo", "connect-url": "http://{host}:{port}/", "fields": []}))
    config["web"] = {**config.get("web", {}), "bundles-dir": str(bundles)}
    config_path.write_text(json.dumps(config, indent=2))
    with system_up(config_path) as system:
        yield system


@pytest.fixture(scope="module")
def portal_url(restricted_system: BwvisuSystem, minicluster: Minicluster,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The system's portal, listening on the bridge so that the client namespaces reach it."""
    with portal_process(restricted_system.config_path, tmp_path_factory.mktemp("portal"),
                        host=minicluster.host_ip, login_delay=0.5, session_secret_file="") as portal:
        yield portal.url


# Inside a client namespace: log in to the portal, press Connect on the session, print where
# the portal sends the browser (without following it).
CONNECT = textwrap.dedent("""
    import re, sys
    import httpx
    portal, user, password, job_id = sys.argv[1:5]
    csrf = re.compile(r'name="csrf" value="([^"]+)"')
    with httpx.Client(base_url=portal, timeout=30) as client:
        page = client.get("/login")
        r = client.post("/login", data={"csrf": csrf.search(page.text).group(1), "username": user,
                                        "password": password, "next": "/sessions"})
        assert r.status_code == 303, r.text
        page = client.get("/sessions")
        r = client.post(f"/sessions/{job_id}/connect", data={"csrf": csrf.search(page.text).group(1)})
        print(r.status_code, r.headers.get("location", ""))
""")


@pytest.fixture
async def api(restricted_system: BwvisuSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(**runner_api_client_args(restricted_system.settings), timeout=90) as client:
        yield client


def probe(ns: str, host: str, port: int, secret: str) -> str:
    """`served <greeting>` or `refused <error>`, for a connection from inside client namespace `ns`."""
    proc = _run("ip", "netns", "exec", ns, "python3", "-c", PROBE, host, str(port), secret)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


async def connect_from(api: httpx.AsyncClient, job_id: str, address: str) -> list[str]:
    r = await api.post(f"/jobs/{job_id}/clients", json={"uid": "alice", "address": address})
    assert r.status_code == 200, r.text
    return list(r.json()["client-addresses"])


async def test_a_forward_serves_only_the_addresses_its_owner_connected_from(
    api: httpx.AsyncClient, restricted_system: BwvisuSystem, minicluster: Minicluster,
    clients: dict[str, str],
) -> None:
    job_id = await submit(api, "port-echo", seconds="300", runtime="6")
    try:
        job = await wait_job(api, job_id, available, timeout=90)
        (service,) = job["services"]
        gw_ip, port = service["external-ip"], service["external-port"]
        secret = await secret_of(api, job_id)
        (gw,) = [g.label for g in restricted_system.settings.gateway_nodes if g.external_ip == gw_ip]
        # Nobody connected yet: no rule lets anyone in.
        assert [r for r in rules_of(minicluster, job_id)[gw] if "-j DNAT" in r] == []
        assert probe("bwvcl0", gw_ip, port, secret).startswith("refused")

        assert await connect_from(api, job_id, clients["bwvcl0"]) == [clients["bwvcl0"]]
        await eventually(lambda: probe("bwvcl0", gw_ip, port, secret).startswith("served"), "bwvcl0 served")
        assert probe("bwvcl0", gw_ip, port, secret).startswith(f"served port-echo {job_id} ")
        assert probe("bwvcl1", gw_ip, port, secret).startswith("refused"), "another address is not served"
        dnat = [r for r in rules_of(minicluster, job_id)[gw] if "-j DNAT" in r]
        assert len(dnat) == 1 and f"-s {clients['bwvcl0']}/32 -d {gw_ip}/32 " in dnat[0], dnat

        # Connect from a second network adds it; the first stays.
        assert await connect_from(api, job_id, clients["bwvcl1"]) == list(clients.values())
        await eventually(lambda: probe("bwvcl1", gw_ip, port, secret).startswith("served"), "bwvcl1 served")
        assert probe("bwvcl0", gw_ip, port, secret).startswith("served")
        r = await api.post(f"/jobs/{job_id}/clients", json={"uid": "bob", "address": "10.200.0.243"})
        assert r.status_code == 404, "only the owner adds addresses"
    finally:
        await cancel(api, job_id)
    await wait_job(api, job_id, finished)
    await eventually(lambda: rules_of(minicluster, job_id)[gw] == [], "the job's rules removed")
    assert probe("bwvcl0", gw_ip, port, secret).startswith("refused")


async def test_connect_in_the_portal_lets_that_browsers_network_in(
    api: httpx.AsyncClient, portal_url: str, minicluster: Minicluster, clients: dict[str, str],
) -> None:
    job_id = await submit(api, "port-echo", seconds="300", runtime="6")
    try:
        job = await wait_job(api, job_id, available, timeout=90)
        (service,) = job["services"]
        gw_ip, port = service["external-ip"], service["external-port"]
        secret = await secret_of(api, job_id)
        proc = _run("ip", "netns", "exec", "bwvcl1", sys.executable, "-c", CONNECT, portal_url, "alice",
                    minicluster.passwords["alice"], job_id)
        assert proc.returncode == 0, proc.stderr
        status, location = proc.stdout.split()
        assert status == "303" and location.startswith(f"http://{gw_ip}:{port}/"), proc.stdout
        await eventually(lambda: probe("bwvcl1", gw_ip, port, secret).startswith("served"), "bwvcl1 served")
        assert probe("bwvcl0", gw_ip, port, secret).startswith("refused"), "the other network stays out"
        got = (await api.get(f"/jobs/{job_id}")).json()
        assert got["state"] == "available"
    finally:
        await cancel(api, job_id)
    await wait_job(api, job_id, finished)
