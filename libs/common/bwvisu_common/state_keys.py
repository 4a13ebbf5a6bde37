"""The state store's key layout, in one place: every service and the access rules read it from here.

Under one root (ROOT) the store keeps six areas: the projected jobs, the sequence they reflect,
reservations, secrets, revoked portal logins and elections (which replica holds a role). The names
inside the reservation and secret areas are what callers of StateStore pass (`port_key(...)`,
`token_key(...)`), the roles what callers of Election pass; the areas themselves are the etcd
adapters' business and the access rules'.
"""

from __future__ import annotations

from collections.abc import Mapping

ROOT = "/bwvisu/"

# --- areas under ROOT ------------------------------------------------------------------------
JOBS = "jobs/"  # jobs/<job id> -> the job's projected view
PROJECTION_SEQ = "projection-seq"  # the stream sequence the projected jobs reflect
RESERVATIONS = "reservations/"  # reservations/<reservation key> -> the job id that holds it
SECRETS = "secrets/"  # secrets/<secret name> -> the secret, under a lease
REVOKED_LOGINS = "web/revoked/"  # web/revoked/<login id>, under a lease
ELECTIONS = "elections/"  # elections/<role> -> the instance that holds the role, under its lease

# --- secret names ----------------------------------------------------------------------------
TOKENS = "token/"
SESSION_SECRETS = "session/"


def token_key(job_id: str) -> str:
    """Where the state store keeps the job's keyhole token (it signs the job's port request)."""
    return f"{TOKENS}{job_id}"


def session_secret_key(job_id: str) -> str:
    """Where the state store keeps the job's session secret (its application demands it)."""
    return f"{SESSION_SECRETS}{job_id}"


def secret_job(name: str) -> str:
    """The job a secret name belongs to ("" for a name outside the layout)."""
    area, _, job_id = name.partition("/")
    return job_id if f"{area}/" in (TOKENS, SESSION_SECRETS) else ""


# --- roles in elections (bwvisu_common.election), each under its service's prefix -------------
SCHEDULER_ROLES = "scheduler-adapter/"
# The one scheduler-adapter that polls Slurm: the squeue calls stay at one per poll however many run.
WATCHER_ROLE = f"{SCHEDULER_ROLES}watcher"
# The one scheduler-adapter that cancels idle sessions (the site's idle-timeout).
IDLE_ROLE = f"{SCHEDULER_ROLES}idle"


def submission_role(job_id: str) -> str:
    """Held by the scheduler-adapter submitting the job right now: never two sbatch for one job."""
    return f"{SCHEDULER_ROLES}submit/{job_id}"


# --- reservation keys, all owned by the job id that holds them --------------------------------
GATEWAY_PORTS = "ports/"
NODE_PORTS = "nodeports/"
GRANTS = "grants/"


def port_key(gateway: str, port: int) -> str:
    """A gateway's external port."""
    return f"{gateway_ports(gateway)}{port}"


def gateway_ports(gateway: str = "") -> str:
    """The prefix of one gateway's external ports (of every gateway's, without `gateway`)."""
    return f"{GATEWAY_PORTS}{gateway}/" if gateway else GATEWAY_PORTS


def node_port_key(node: str, port: int) -> str:
    """An internal port on a compute node (two jobs on one node never get the same one)."""
    return f"{NODE_PORTS}{node}/{port}"


def grant_key(job_id: str) -> str:
    """The job's one grant of forwarded ports."""
    return f"{GRANTS}{job_id}"


def host_of(key: str) -> str:
    """The gateway of a port key, the node of a node-port key."""
    return key.split("/")[1]


def port_of(key: str) -> int:
    """The port number of a port key or a node-port key."""
    return int(key.rsplit("/", 1)[1])


def held_by(held: Mapping[str, str], owner: str) -> list[str]:
    """The keys of `held` (key -> owner, as StateStore.reservations answers) that `owner` holds."""
    return [key for key, holder in held.items() if holder == owner]
