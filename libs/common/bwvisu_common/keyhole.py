"""The `#KEYHOLE-REQUEST-PORTS N` line of a template, expanded into bash (DESIGN.md §2 step 4).

The block runs the keyhole client (keyhole_client.py, embedded whole) with python3. The
script comes in on fd 3 and the token on stdin, both as quoted heredocs: the token is on
no command line and in no exported variable, so the application never sees it.

The session secret (what the job's application demands of whoever connects) travels on
the same stdin, as the second line; the client prints it back as an `export` that the
block evaluates in the script's own shell. So it ends up only in the environment of the
job's processes (readable through /proc by its owner alone), never on a command line.
"""

from __future__ import annotations

import re
import secrets
import shlex
from pathlib import Path

import msgspec

from bwvisu_common.keyhole_client import SESSION_SECRET_VAR as SESSION_SECRET_VAR

DIRECTIVE = re.compile(r"^#KEYHOLE-REQUEST-PORTS[ \t]+(\d+)[ \t]*$", re.MULTILINE)

CLIENT_FILE = Path(__file__).with_name("keyhole_client.py")
_SCRIPT_END = "BWVISU_KEYHOLE_CLIENT_EOF"
_TOKEN_END = "BWVISU_KEYHOLE_TOKEN_EOF"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.~+/=-]+")


def token_key(job_id: str) -> str:
    """Where the state store keeps the job's keyhole token (it signs the job's port request)."""
    return f"token/{job_id}"


def session_secret_key(job_id: str) -> str:
    """Where the state store keeps the job's session secret (its application demands it)."""
    return f"session/{job_id}"


def new_session_secret() -> str:
    """256 random bits, in characters every application takes in a URL, a header or a line."""
    return secrets.token_hex(32)


def client_source() -> str:
    return CLIENT_FILE.read_text()


def keyhole_block(count: int, *, job_id: str, token: str, servers: list[str], hostname_suffix: str,
                  session_secret: str = "") -> str:
    """Bash that asks for `count` forwarded ports and exports KEYHOLE_PORT<I> etc.

    With `session_secret`, it also exports BWVISU_SESSION_SECRET for the application.
    """
    source = client_source()
    if any(line == _SCRIPT_END for line in source.splitlines()):
        raise ValueError("the keyhole client must not contain its own heredoc delimiter")
    if not _TOKEN_CHARS.fullmatch(token):
        raise ValueError("the job token must be plain printable characters")
    if session_secret and not _TOKEN_CHARS.fullmatch(session_secret):
        raise ValueError("the session secret must be plain printable characters")
    # `--opt=value`: a value starting with "-" (a suffix like "-ib") stays a value.
    argv = [f"--job-id={job_id}", f"--count={count}", f"--hostname-suffix={hostname_suffix}"]
    argv += [f"--server={server}" for server in servers]
    return "\n".join([
        "# bwvisu keyhole: ask for forwarded ports; the job stops here if none are granted",
        f"__bwvisu_keyhole=$(python3 /dev/fd/3 {shlex.join(argv)} 3<<'{_SCRIPT_END}' <<'{_TOKEN_END}'",
        source.rstrip("\n"),
        _SCRIPT_END,
        token,
        *([session_secret] if session_secret else []),
        _TOKEN_END,
        ") || { echo 'keyhole: no ports forwarded; stopping the job' >&2; exit 1; }",
        'eval "$__bwvisu_keyhole"',
        "unset __bwvisu_keyhole",
    ])


# --- shared by keyhole-api and the gateway agents ------------------------------------------

HEARTBEAT_SUBJECTS = "bwvisu.gateways.*.heartbeat"
HEARTBEAT_INTERVAL = 1.0  # seconds between an agent's heartbeats
HEARTBEAT_TIMEOUT = 5.0  # an agent silent this long counts as dead


def heartbeat_subject(gateway: str) -> str:
    return f"bwvisu.gateways.{gateway}.heartbeat"


def heartbeat_gateway(subject: str) -> str:
    """The gateway a heartbeat speaks for: from its subject, which only that gateway's agent may
    publish on (NATS permissions), never from the body, which any agent could fill in."""
    parts = subject.split(".")
    return parts[2] if len(parts) == 4 and parts[3] == "heartbeat" else ""


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """A gateway agent's sign of life, on core NATS (not an event: it changes no job)."""

    gateway: str
    forwards: int = 0


# Reservation keys in the state store, all owned by the job id that holds them.
def port_key(gateway: str, port: int) -> str:
    """A gateway's external port."""
    return f"ports/{gateway}/{port}"


def node_port_key(node: str, port: int) -> str:
    """An internal port on a compute node (two jobs on one node never get the same one)."""
    return f"nodeports/{node}/{port}"


def grant_key(job_id: str) -> str:
    """The job's one grant of forwarded ports."""
    return f"grants/{job_id}"
