"""etcd's users and roles from the identity table, then auth on: what `bwvisu up` does after etcd starts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
from aetcd import rpc

from bwvisu_cli.access import ETCD_ROOT, Identity, identities, password
from bwvisu_common.adapters.etcd import _prefix_end
from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.settings import Settings

log = logging.getLogger(__name__)


async def set_up_etcd_auth(settings: Settings, host: str, port: int) -> None:
    """Idempotent: users and roles are (re)made with the current passwords; auth is switched on."""
    ca_file = settings.credentials.ca_file
    target = f"{host}:{port}"
    if ca_file:
        pem = await asyncio.to_thread(Path(ca_file).read_bytes)
        creds = grpc.ssl_channel_credentials(root_certificates=pem)
        channel = rpc.secure_channel(target, creds)
    else:
        channel = rpc.insecure_channel(target)
    try:
        auth = rpc.AuthStub(channel)
        metadata: tuple[tuple[str, str], ...] = ()
        if (await auth.AuthStatus(rpc.AuthStatusRequest(), timeout=5)).enabled:
            # A restart over an existing data dir: log in as root to bring users up to date.
            login = rpc.AuthenticateRequest(name=ETCD_ROOT, password=password(settings, ETCD_ROOT))
            metadata = (("token", (await auth.Authenticate(login, timeout=5)).token),)
        await _user(auth, metadata, ETCD_ROOT, password(settings, ETCD_ROOT), "root", [], [])
        for who in identities(settings):
            await _identity(auth, metadata, who, password(settings, who.name))
        await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=5, metadata=metadata)
    except grpc.RpcError as exc:
        raise DependencyUnavailable(f"cannot set up etcd's users at {target}: {exc}") from exc
    finally:
        await channel.close()


async def _identity(auth: rpc.AuthStub, metadata: tuple[tuple[str, str], ...], who: Identity,
                    secret: str) -> None:
    await _user(auth, metadata, who.name, secret, who.name, who.etcd_read, who.etcd_write)


async def _user(auth: rpc.AuthStub, metadata: tuple[tuple[str, str], ...], name: str, secret: str,
                role: str, read: list[str], write: list[str]) -> None:
    async def call(method: str, request: object) -> None:
        try:
            await getattr(auth, method)(request, timeout=5, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            if "already exists" not in (exc.details() or ""):
                raise

    await call("UserAdd", rpc.AuthUserAddRequest(name=name, password=secret))
    await auth.UserChangePassword(rpc.AuthUserChangePasswordRequest(name=name, password=secret),
                                  timeout=5, metadata=metadata)
    await call("RoleAdd", rpc.AuthRoleAddRequest(name=role))
    for kind, prefixes in ((rpc.Permission.READ, read), (rpc.Permission.READWRITE, write)):
        for prefix in prefixes:
            key = prefix.encode()
            end = _prefix_end(prefix) if prefix.endswith("/") else b""
            perm = rpc.Permission(permType=kind, key=key, range_end=end)
            await auth.RoleGrantPermission(rpc.AuthRoleGrantPermissionRequest(name=role, perm=perm),
                                           timeout=5, metadata=metadata)
    await call("UserGrantRole", rpc.AuthUserGrantRoleRequest(user=name, role=role))
