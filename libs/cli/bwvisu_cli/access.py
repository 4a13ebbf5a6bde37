"""Who may do what on NATS and etcd: one identity per service, with only the subjects and keys it needs.

`bwvisu up` writes the NATS server's users and permissions from here and sets up etcd's users and
roles the same way; a site that runs its own servers copies the tables (deploy/README.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bwvisu_common import state_keys as layout
from bwvisu_common.adapters.jetstream import STREAM, SUBJECT_PREFIX
from bwvisu_common.connect import credential_file, gateway_identity
from bwvisu_common.heartbeats import HEARTBEAT_SUBJECTS, heartbeat_subject
from bwvisu_common.rpc import CHECK_USER, CLUSTER_FACTS, JOB_LOG
from bwvisu_common.secret_files import ensure_secret_file, read_secret_file
from bwvisu_common.settings import Settings

# Enough to read the stream, one job's history, and follow it with an ordered consumer (every service
# folds the stream); every identity has them. Ordered consumers are ephemeral, named at random.
READ_STREAM = [
    "$JS.API.INFO", "$JS.API.STREAM.NAMES", f"$JS.API.STREAM.INFO.{STREAM}",
    f"$JS.API.STREAM.MSG.GET.{STREAM}", f"$JS.API.CONSUMER.CREATE.{STREAM}",
    f"$JS.API.CONSUMER.CREATE.{STREAM}.>", f"$JS.API.CONSUMER.INFO.{STREAM}.*", f"$JS.FC.{STREAM}.>",
]
# Creating and upgrading the stream; a gateway agent must not be able to change its limits.
MANAGE_STREAM = [f"$JS.API.STREAM.CREATE.{STREAM}", f"$JS.API.STREAM.UPDATE.{STREAM}"]
# Deleting any consumer (a durable too): only the read model's owners, not a gateway agent.
ORDERED_CONSUMER = [f"$JS.API.CONSUMER.DELETE.{STREAM}.*"]
RPC = [CHECK_USER, JOB_LOG, CLUSTER_FACTS]
ETCD_ROOT = "root"


def durable_creation(name: str) -> list[str]:
    """The API subjects that create (or redefine) durable consumer `name`."""
    api = "$JS.API.CONSUMER"
    return [f"{api}.CREATE.{STREAM}.{name}", f"{api}.CREATE.{STREAM}.{name}.>",
            f"{api}.DURABLE.CREATE.{STREAM}.{name}"]


def durable(name: str) -> list[str]:
    """A durable pull consumer `name` and acks of its own messages only."""
    api = "$JS.API.CONSUMER"
    return [f"{api}.INFO.{STREAM}.{name}", f"{api}.CREATE.{STREAM}.{name}", f"{api}.CREATE.{STREAM}.{name}.>",
            f"{api}.DURABLE.CREATE.{STREAM}.{name}", f"{api}.MSG.NEXT.{STREAM}.{name}",
            f"$JS.ACK.{STREAM}.{name}.>"]


def appends(identity: str) -> list[str]:
    """The stream subjects on which `identity` appends (bwvisu.jobs.<job>.<identity>)."""
    return [f"{SUBJECT_PREFIX}*.{identity}"]


@dataclass
class Identity:
    """One service's rights: NATS publish/subscribe subjects, etcd key prefixes (read, read-write)."""

    name: str
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    responds: bool = False  # answers requests (core NATS request/reply)
    etcd_read: list[str] = field(default_factory=list)
    etcd_write: list[str] = field(default_factory=list)

    def nats_user(self, password: str, others_durables: Sequence[str] = ()) -> dict[str, object]:
        publish: dict[str, object] = {"allow": READ_STREAM + self.publish}
        # Creating consumers is allowed (every service follows the stream with an ephemeral one),
        # but never under another service's durable name: that would redefine what it receives.
        deny = [s for name in others_durables for s in durable_creation(name)]
        if deny:
            publish["deny"] = deny
        permissions: dict[str, object] = {
            "publish": publish, "subscribe": {"allow": [f"_INBOX_{self.name}.>", *self.subscribe]},
        }
        if self.responds:
            permissions["allow_responses"] = True
        return {"user": self.name, "password": password, "permissions": permissions}


def identities(settings: Settings, prefix: str = layout.ROOT) -> list[Identity]:
    """Every identity of this configuration, with its rights."""
    jobs, seq = f"{prefix}{layout.JOBS}", f"{prefix}{layout.PROJECTION_SEQ}"
    reservations, secrets = f"{prefix}{layout.RESERVATIONS}", f"{prefix}{layout.SECRETS}"
    scheduler_roles = f"{prefix}{layout.ELECTIONS}{layout.SCHEDULER_ROLES}"
    read_model = [jobs, seq]
    found = [
        # runner-api hands the owner's view its session secret (Connect).
        Identity("runner-api", publish=appends("runner-api") + RPC,
                 etcd_read=[*read_model, f"{secrets}{layout.SESSION_SECRETS}"]),
        # Its replicas elect the watcher and claim each submission under its roles.
        Identity("scheduler-adapter", publish=appends("scheduler-adapter") + MANAGE_STREAM
                 + durable("scheduler-adapter"), subscribe=[*RPC, HEARTBEAT_SUBJECTS], responds=True,
                 etcd_read=read_model, etcd_write=[secrets, scheduler_roles]),
        Identity("keyhole-api", publish=appends("keyhole-api"), subscribe=[HEARTBEAT_SUBJECTS],
                 etcd_read=[*read_model, f"{secrets}{layout.TOKENS}"], etcd_write=[reservations]),
        # The portal keeps logouts where every replica sees them.
        Identity("web", publish=RPC, subscribe=[HEARTBEAT_SUBJECTS], etcd_read=read_model,
                 etcd_write=[f"{prefix}{layout.REVOKED_LOGINS}"]),
        Identity("projector", publish=MANAGE_STREAM + ORDERED_CONSUMER, etcd_write=read_model),
        # `bwvisu status` and `bwvisu rebuild-state`: read and re-fold, never append.
        Identity("admin", publish=MANAGE_STREAM + ORDERED_CONSUMER, etcd_write=read_model,
                 etcd_read=[prefix]),
    ]
    for gw in settings.gateway_nodes:
        name = gateway_identity(gw.label)
        found.append(Identity(
            name, publish=appends(name) + durable(f"gateway-agent-{gw.label}")
            + [heartbeat_subject(gw.label)], etcd_read=read_model, etcd_write=[reservations],
        ))
    return found


def ensure_credentials(settings: Settings) -> list[str]:
    """A password file (0600) for every identity and etcd's root; the names of those made now."""
    names = [i.name for i in identities(settings)] + [ETCD_ROOT]
    return [n for n in names if ensure_secret_file(Path(credential_file(settings, n)), 32)]


def password(settings: Settings, identity: str) -> str:
    return read_secret_file(credential_file(settings, identity), "credentials.dir", min_length=16,
                            group_readable=False)


# How soon a server notices that a peer's link went down (routes) or a client's did: three pings two
# seconds apart unanswered (a busy peer gets 6-8 s). nats-server's default, two minutes, kept the
# subscriptions of a node that dropped off the network in the others' routing for that long, so
# requests to a queue group (the scheduler-adapters') went to the dead node and were lost.
NATS_PINGS = {"ping_interval": "2s", "ping_max": 3}


def write_nats_config(settings: Settings, path: Path) -> None:
    """nats-server's users and permissions (mode 0600: it holds the passwords)."""
    found = identities(settings)
    durables = {i.name: [s.split(".")[-1] for s in i.publish
                         if s.startswith(f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.")] for i in found}
    users = [i.nats_user(password(settings, i.name),
                         [d for other, names in durables.items() if other != i.name for d in names])
             for i in found]
    config: dict[str, object] = {"authorization": {"users": users}, **NATS_PINGS}
    if settings.credentials.ca_file:
        config["tls"] = _nats_tls(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)  # nats-server reads JSON as its config syntax


def _nats_tls(settings: Settings) -> dict[str, object]:
    tls = Path(settings.credentials.dir) / "tls"
    return {"cert_file": str(tls / "server.crt"), "key_file": str(tls / "server.key"),
            "ca_file": settings.credentials.ca_file}
