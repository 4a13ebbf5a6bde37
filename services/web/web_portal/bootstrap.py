"""Builds the portal from settings: the only place its adapters are constructed."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bwvisu_common.adapters.tcp_prober import TcpProber
from bwvisu_common.connect import finished_jobs_kept_for, open_stores_retrying
from bwvisu_common.errors import ConfigError
from bwvisu_common.heartbeats import GatewayHeartbeats
from bwvisu_common.idle import IdlePolicy
from bwvisu_common.live_jobs import LiveJobs
from bwvisu_common.secret_files import ensure_secret_file, read_secret_file
from bwvisu_common.settings import Settings, templates_path
from web_portal.adapters.auth import PamAuthenticator, TrustedHeaderAuthenticator
from web_portal.adapters.bundle_files import load_bundles
from web_portal.adapters.runner_api import RunnerApiClient
from web_portal.adapters.system import UnixGroups
from web_portal.app_needs import AppNeeds
from web_portal.domain.client_address import Network, parse_networks
from web_portal.domain.login_limits import LoginLimits
from web_portal.portal import Portal
from web_portal.revocations import Revocations

log = logging.getLogger(__name__)


def runner_api_urls(settings: Settings) -> list[str]:
    configured = settings.web.runner_api_url
    urls = [configured] if isinstance(configured, str) else list(configured)
    urls = [u.rstrip("/") for u in urls if u]
    if urls:
        return urls
    conf = settings.runner_api
    host = "127.0.0.1" if conf.host in ("0.0.0.0", "::", "") else conf.host
    scheme = "https" if conf.tls_cert else "http"
    return [f"{scheme}://{host}:{conf.port}"]


def session_secret(settings: Settings) -> str:
    """The cookie-signing key: from `web.session-secret-file`, else made once in the state dir."""
    if settings.web.session_secret_file:
        return read_secret_file(settings.web.session_secret_file, "web.session-secret-file", 32)
    path = Path(settings.state_dir) / "web-session.secret"
    ensure_secret_file(path, nbytes=48)
    return read_secret_file(path, "web.session-secret-file", 32)


def trusted_networks(settings: Settings) -> list[Network]:
    try:
        return parse_networks(settings.web.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"web.trusted-proxies: {exc}") from exc


@dataclass
class Deps:
    """What the portal's process runs: the read model it follows and what its app serves."""

    feed: LiveJobs
    portal: Portal
    session_secret: str  # signs the session cookies


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> Deps:
    """Connect to NATS and etcd (waiting for them if they are not up yet); all closes with `stack`."""
    web = settings.web
    # Read before connecting: a bad bundle, secret or network is a configuration error, said at once.
    templates_dir = templates_path(settings)
    bundles = load_bundles(Path(web.bundles_dir or templates_dir), templates_dir)
    secret = session_secret(settings)
    networks = trusted_networks(settings)
    runner = RunnerApiClient(runner_api_urls(settings), settings.runner_api.user,
                             read_secret_file(settings.runner_api.password_file, "runner-api.password-file"))
    stack.push_async_callback(runner.aclose)
    events, state = await open_stores_retrying(settings, stack, "web-portal")
    beats = GatewayHeartbeats()
    stack.push_async_callback(await beats.follow(events.nats))
    feed = LiveJobs(events, state, kept_for=finished_jobs_kept_for(settings))
    portal = Portal(
        bundles=bundles, runner=runner, feed=feed, groups=UnixGroups(), prober=TcpProber(),
        authenticator=PamAuthenticator(web.pam_service) if web.auth == "pam" else None,
        header_auth=(TrustedHeaderAuthenticator(web.trusted_header, web.trusted_proxies)
                     if web.auth == "header" else None),
        admin_group=web.admin_group, keep_finished_minutes=web.finished_sessions_kept_for,
        login_delay=web.login_delay, gateways=list(settings.gateway_nodes),
        command_nodes=list(settings.command_nodes), beats=beats, history=events,
        login_limits=LoginLimits(web.login_max_failures_per_address, web.login_max_failures,
                                 web.login_window),
        session_max_age=web.session_max_age, trusted_networks=networks,
        revocations=Revocations(state, cache_for=web.revocation_check_interval),
        restrict_forwards=settings.restrict_forwards_to_clients,
        app_needs=AppNeeds(runner),
        ending_warning=timedelta(minutes=web.ending_warning), max_extension=settings.scheduler.max_extension,
        idle_policy=IdlePolicy(settings.idle_timeout, settings.idle_warning),
    )
    return Deps(feed=feed, portal=portal, session_secret=secret)
