"""The one configuration file: the original bwVisu config.json fields plus ours (DESIGN.md §5).

A wrong, missing or unknown field is a ConfigError naming the field, raised at start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from bwvisu_common.errors import ConfigError
from bwvisu_common.needs import COMMAND_NAME
from bwvisu_common.templates import FileTemplates

ENV_CONFIG = "BWVISU_CONFIG"


class _Section(msgspec.Struct, frozen=True, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    pass


class CommandNode(_Section, frozen=True, kw_only=True):
    ip: str
    user: str = "bwvisu"
    port: int = 22
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.ip


class GatewayNode(_Section, frozen=True, kw_only=True):
    internal_ip: str
    external_ip: str
    user: str = "bwvisu"
    port: int = 22
    name: str = ""
    # `bwvisu up` runs this gateway's agent inside this network namespace (testbeds).
    netns: str = ""
    metrics_host: str = ""  # where its agent serves /metrics (default: metrics.host)

    @property
    def label(self) -> str:
        return self.name or self.internal_ip


class PortRange(_Section, frozen=True, kw_only=True):
    min: int
    max: int


class Debug(_Section, frozen=True, kw_only=True):
    keyholed_static_forwarding: bool = False


class Ssh(_Section, frozen=True, kw_only=True):
    key_file: str = ""
    known_hosts: str = ""
    connect_timeout: float = 5.0
    command_timeout: float = 30.0
    # A node that does not start a command within this long is skipped (its link may be down).
    answer_timeout: float = 3.0
    # An open connection whose peer misses this many keepalives in a row is closed.
    keepalive_interval: float = 2.0
    keepalive_count_max: int = 3
    # Commands running at once over one node's connection (sshd's MaxSessions is 10 by default);
    # when every channel of the first node is busy, the next node takes the command.
    channels_per_node: int = 8


class RunnerApi(_Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 4242
    user: str = "bwvisu-web"
    password_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""


class Credentials(_Section, frozen=True, kw_only=True):
    """Who each service is to NATS and etcd: one password file per identity, and TLS trust."""

    # <dir>/<identity>.password per identity (runner-api, gateway-<name>, ...); `bwvisu up` makes them.
    dir: str = ""  # default: <state-dir>/credentials
    # NATS and etcd are reached over TLS, their certificates checked against `ca-file`
    # (default <dir>/tls/ca.crt, which `bwvisu up` makes with the servers' certificates).
    tls: bool = True
    ca_file: str = ""
    # Off only for servers that run without auth (a test's own nats-server); production keeps it on.
    required: bool = True


class KeyholeApi(_Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 4243
    timestamp_window: float = 60.0
    max_body_bytes: int = 4096  # a port request is ~200 bytes; larger bodies get 413 unread


class Scheduler(_Section, frozen=True, kw_only=True):
    poll_interval: float = 2.0
    absent_polls_to_finish: int = 3
    job_tag: str = "bwvisu"
    # Who may be a job's user (besides never root, never the command nodes' `user`): a uid within
    # login.defs' usual UID_MIN..UID_MAX, and, if set, membership in this group.
    min_uid: int = 1000
    max_uid: int = 60000
    required_group: str = ""
    # Submissions and cancels handled at once (never two of one job).
    concurrent_events: int = 32
    # Cancels of one user arriving within this many seconds go to Slurm as one scancel (at most
    # cancel-batch-max ids).
    cancel_batch_window: float = 0.05
    cancel_batch_max: int = 200
    # A slurmctld answering "busy" (timeouts, resources unavailable) is asked nothing for a while:
    # 0.5 s after the first such answer, doubling up to this many seconds.
    busy_backoff_max: float = 30.0
    # Minutes of run time an owner may add to one running job in all (0: Extend is off). Needs the
    # sudo rule for `scontrol update JobId=<id> TimeLimit=<minutes>` (README, "Extend").
    max_extension: int = 0


class Web(_Section, frozen=True, kw_only=True):
    """The web portal: where it listens, how people log in, what it shows."""

    host: str = "127.0.0.1"
    port: int = 8080
    auth: str = "pam"  # "pam": user name and password; "header": an SSO proxy names the user
    pam_service: str = "login"
    trusted_header: str = "X-Remote-User"
    trusted_proxies: list[str] = []  # addresses or networks whose `trusted-header` is believed
    session_secret_file: str = ""  # default: <state-dir>/web-session.secret, made on first start
    session_max_age: int = 12 * 3600  # seconds
    secure_cookies: bool = False  # set when the portal is served over HTTPS
    admin_group: str = "bwvisu-admin"
    finished_sessions_kept_for: float = 60.0  # minutes
    # One URL, or a list (one per runner-api replica: the next is tried when one cannot be reached).
    runner_api_url: str | list[str] = ""  # default: from runner-api's host and port
    bundles_dir: str = ""  # default: the templates directory
    login_delay: float = 1.0  # seconds added to every failed login
    # Failed logins within `login-window` seconds, then 429 until the oldest one is older:
    login_window: float = 300.0
    login_max_failures_per_address: int = 10  # from one source address
    login_max_failures: int = 200  # from everywhere together, per portal replica
    revocation_check_interval: float = 2.0  # seconds a logout elsewhere may take to reach this replica
    ending_warning: float = 10.0  # minutes before a session's end its card warns (and notifies)


class Metrics(_Section, frozen=True, kw_only=True):
    """Where the processes without an HTTP server of their own serve Prometheus' /metrics (port 0: not
    served). runner-api, keyhole-api and the portal serve /metrics beside their API."""

    # Loopback by default: nothing new is reachable from elsewhere until a site says where to listen.
    host: str = "127.0.0.1"
    up_port: int = 9460  # `bwvisu up` itself: its children's restarts
    projector_port: int = 9461
    scheduler_adapter_port: int = 9462
    # Each gateway's agent, on `gateway-nodes[].metrics-host` (default: `host`).
    gateway_agent_port: int = 9463


class Logging(_Section, frozen=True, kw_only=True):
    """How every process writes its log: "text" lines, or "json" (one object per line) for a log shipper."""

    format: str = "text"


class AppNeeds(_Section, frozen=True, kw_only=True):
    """How scheduler-adapter finds out what the cluster has of what the app bundles' `needs` name."""

    check_interval: float = 300.0  # seconds between two looks (sinfo, and commands on a login node)
    # The commands the compute nodes have, in the site's own word: when set, commands are judged by
    # this list and not looked for on a login node (for sites whose login nodes differ).
    compute_node_commands: list[str] | None = None


class Settings(_Section, frozen=True, kw_only=True):
    """The whole configuration, as one immutable value."""

    bwvisu_home_prefix: str
    command_nodes: list[CommandNode]
    gateway_nodes: list[GatewayNode] = []
    keyholed_servers: list[str] = []
    keyholed_port_range: PortRange = PortRange(min=20000, max=29999)
    keyholed_max_forwarders_per_job: int = 4
    etcd_servers: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1:2379"])
    forwarding_hostname_suffix: str = ""
    debug: Debug = Debug()
    # Ours, beyond the original bwVisu fields:
    # Forwards accept connections only from the addresses their owner pressed Connect from.
    # Off by default: it needs users to reach the portal and the gateways from one address.
    restrict_forwards_to_clients: bool = False
    nats_servers: list[str] = msgspec.field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    stream_replicas: int = 1
    stream_max_bytes: int = 8 * 1024**3  # the job event stream's bounds; 0: none
    stream_max_age: float = 180.0  # days
    stream_max_events_per_job: int = 10_000
    # Days a finished job stays in every service's memory and in etcd's read model:
    finished_jobs_kept_for: float = 7.0
    state_dir: str = ".bwvisu"
    templates_dir: str = ""
    ssh: Ssh = Ssh()
    runner_api: RunnerApi = RunnerApi()
    keyhole_api: KeyholeApi = KeyholeApi()
    scheduler: Scheduler = Scheduler()
    web: Web = Web()
    credentials: Credentials = Credentials()
    metrics: Metrics = Metrics()
    logging: Logging = Logging()
    app_needs: AppNeeds = AppNeeds()
    # Idle sessions (README, "Idle sessions"): minutes without traffic after which a session is
    # cancelled (0: never), the warning's lead time in minutes, and how often (seconds) a gateway
    # agent reads its forwards' traffic, which is also the grain of the activity it reports.
    idle_timeout: float = 0.0
    idle_warning: float = 10.0
    activity_interval: float = 60.0

    def __post_init__(self) -> None:
        _check(self)


def _check(s: Settings) -> None:
    def fail(field: str, problem: str) -> None:
        raise msgspec.ValidationError(f"{problem} - at `$.{field}`")

    if not s.command_nodes:
        fail("command-nodes", "Expected at least one command node")
    r = s.keyholed_port_range
    if not (1 <= r.min <= r.max <= 65535):
        fail("keyholed-port-range", f"Expected 1 <= min <= max <= 65535, got {r.min}..{r.max}")
    if s.keyhole_api.max_body_bytes < 512:
        fail("keyhole-api.max-body-bytes", "Expected at least 512 (a port request must fit)")
    if s.keyholed_max_forwarders_per_job < 1:
        fail("keyholed-max-forwarders-per-job", "Expected a number >= 1")
    if not 1 <= s.stream_replicas <= 5:
        fail("stream-replicas", "Expected 1 to 5")
    for name, value in (("stream-max-bytes", s.stream_max_bytes), ("stream-max-age", s.stream_max_age),
                        ("stream-max-events-per-job", s.stream_max_events_per_job)):
        if value < 0:
            fail(name, "Expected a number >= 0 (0: no bound)")
    if s.finished_jobs_kept_for <= 0:
        fail("finished-jobs-kept-for", f"Expected a number of days > 0, got {s.finished_jobs_kept_for}")
    if 0 < s.stream_max_age < s.finished_jobs_kept_for:
        # A rebuild replays the stream: it must still hold every job the read model keeps.
        fail("stream-max-age", "Expected 0 or at least finished-jobs-kept-for (days)")
    if 0 < s.stream_max_events_per_job < 100:
        fail("stream-max-events-per-job", "Expected 0 or at least 100 (a job's history must fit)")
    if s.scheduler.min_uid < 1:
        fail("scheduler.min-uid", "Expected a uid >= 1 (root never runs jobs)")
    if s.scheduler.max_uid < s.scheduler.min_uid:
        fail("scheduler.max-uid", "Expected a uid >= scheduler.min-uid")
    for i, addr in enumerate(s.etcd_servers):
        host_port(addr, 2379, f"etcd-servers[{i}]")
    if s.web.auth not in ("pam", "header"):
        fail("web.auth", f"Expected 'pam' or 'header', got {s.web.auth!r}")
    if s.web.auth == "header" and not s.web.trusted_proxies:
        fail("web.trusted-proxies", "Expected the proxy addresses whose header to trust (auth 'header')")
    for name, value in (("login-window", s.web.login_window),
                        ("login-max-failures-per-address", s.web.login_max_failures_per_address),
                        ("login-max-failures", s.web.login_max_failures)):
        if value <= 0:
            fail(f"web.{name}", f"Expected a number > 0, got {value}")
    if s.scheduler.max_extension < 0:
        fail("scheduler.max-extension", "Expected minutes >= 0 (0: no extensions)")
    if s.web.ending_warning < 0:
        fail("web.ending-warning", "Expected minutes >= 0")
    if s.web.revocation_check_interval < 0:
        fail("web.revocation-check-interval", "Expected a number >= 0")
    for name in ("up-port", "projector-port", "scheduler-adapter-port", "gateway-agent-port"):
        if not 0 <= getattr(s.metrics, name.replace("-", "_")) <= 65535:
            fail(f"metrics.{name}", "Expected a port from 1 to 65535, or 0 (not served)")
    if s.logging.format not in ("text", "json"):
        fail("logging.format", f"Expected 'text' or 'json', got {s.logging.format!r}")
    for name, value in (("idle-timeout", s.idle_timeout), ("idle-warning", s.idle_warning)):
        if value < 0:
            fail(name, f"Expected a number of minutes >= 0, got {value}")
    if s.activity_interval < 0.5:
        fail("activity-interval", f"Expected a number of seconds >= 0.5, got {s.activity_interval}")
    labels = [g.label for g in s.gateway_nodes]
    if len(set(labels)) != len(labels):
        fail("gateway-nodes", f"Expected unique gateway names, got {labels}")
    for name, count in (("ssh.channels-per-node", s.ssh.channels_per_node),
                        ("scheduler.concurrent-events", s.scheduler.concurrent_events),
                        ("scheduler.cancel-batch-max", s.scheduler.cancel_batch_max)):
        if count < 1:
            fail(name, f"Expected a number >= 1, got {count}")
    _check_app_needs(s.app_needs, fail)


def _check_app_needs(a: AppNeeds, fail: Callable[[str, str], None]) -> None:
    if a.check_interval < 10:
        fail("app-needs.check-interval", f"Expected at least 10 (seconds), got {a.check_interval}")
    for i, name in enumerate(a.compute_node_commands or []):
        if not COMMAND_NAME.fullmatch(name):
            fail(f"app-needs.compute-node-commands[{i}]",
                 f"Expected a command name (letters, digits, '.', '_', '+', '-'), got {name!r}")


def gateway_metrics_host(settings: Settings, gateway: GatewayNode) -> str:
    """Where `gateway`'s agent serves /metrics."""
    return gateway.metrics_host or settings.metrics.host


def templates_path(settings: Settings) -> Path:
    """Where batch-script templates (and the portal's app bundles) live."""
    return FileTemplates(settings.templates_dir).directory


def host_port(address: str, default_port: int, field: str = "address") -> tuple[str, int]:
    """Split `host:port`, `host` or `scheme://host:port` into (host, port)."""
    parsed = urlsplit(address if "//" in address else f"//{address}")
    try:
        port = parsed.port or default_port
    except ValueError as exc:
        raise ConfigError(f"{field}: bad port in {address!r}") from exc
    if not parsed.hostname:
        raise ConfigError(f"{field}: no host in {address!r}")
    return parsed.hostname, port


def parse_settings(data: bytes, source: str = "config") -> Settings:
    try:
        return msgspec.json.decode(data, type=Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_kebab_message(str(exc))}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from exc


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the config file (argument, else $BWVISU_CONFIG); relative paths resolve beside it."""
    path = path or os.environ.get(ENV_CONFIG)
    if not path:
        raise ConfigError(f"no configuration file given (use --config or set {ENV_CONFIG})")
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {file}: {exc.strerror}") from exc
    settings = parse_settings(data, str(file))
    return _resolve_paths(settings, file.resolve().parent)


def _kebab_message(message: str) -> str:
    # msgspec already names fields by their encoded (kebab) names; keep its wording.
    return message.replace("Object contains unknown field", "unknown field")


def _resolve_paths(s: Settings, base: Path) -> Settings:
    def resolve(p: str) -> str:
        return os.path.normpath(base / p) if p and not os.path.isabs(p) else p

    state_dir = resolve(s.state_dir)
    # The portal's API password lives with the state unless the config says otherwise.
    password_file = resolve(s.runner_api.password_file) or os.path.join(
        state_dir, "secrets", "bwvisu-web.password"
    )
    return msgspec.structs.replace(
        s,
        state_dir=state_dir,
        templates_dir=resolve(s.templates_dir),
        ssh=msgspec.structs.replace(
            s.ssh, key_file=resolve(s.ssh.key_file), known_hosts=resolve(s.ssh.known_hosts)
        ),
        runner_api=msgspec.structs.replace(
            s.runner_api,
            password_file=password_file,
            tls_cert=resolve(s.runner_api.tls_cert),
            tls_key=resolve(s.runner_api.tls_key),
        ),
        web=msgspec.structs.replace(
            s.web, session_secret_file=resolve(s.web.session_secret_file),
            bundles_dir=resolve(s.web.bundles_dir),
        ),
        credentials=_resolve_credentials(s.credentials, resolve, state_dir),
    )


def _resolve_credentials(c: Credentials, resolve: Callable[[str], str], state_dir: str) -> Credentials:
    directory = resolve(c.dir) or os.path.join(state_dir, "credentials")
    ca_file = (resolve(c.ca_file) or os.path.join(directory, "tls", "ca.crt")) if c.tls else ""
    return msgspec.structs.replace(c, dir=directory, ca_file=ca_file)
