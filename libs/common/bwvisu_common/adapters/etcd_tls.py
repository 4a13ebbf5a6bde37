"""aetcd over TLS: aetcd 1.x opens only plaintext gRPC channels, so this client opens a TLS one."""

from __future__ import annotations

import aetcd
import grpc
from aetcd import rpc, watcher
from aetcd.client import _handle_errors


class TlsEtcdClient(aetcd.Client):  # type: ignore[misc]
    """aetcd.Client whose channel checks the server's certificate against the CA in `ca_pem`."""

    ca_pem = b""

    @_handle_errors  # type: ignore[untyped-decorator]
    async def connect(self) -> None:
        # aetcd's connect, with rpc.secure_channel instead of rpc.insecure_channel; keep the two alike.
        if self._connected.is_set():
            return
        try:
            self._is_connecting = True
            credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
            self.channel = rpc.secure_channel(
                f"{self._host}:{self._port}", credentials, options=self._options.items()
            )
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                resp = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", resp.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False
