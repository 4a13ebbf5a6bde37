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

from bwvisu_common.keyhole_client import SESSION_SECRET_VAR as SESSION_SECRET_VAR

DIRECTIVE = re.compile(r"^#KEYHOLE-REQUEST-PORTS[ \t]+(\d+)[ \t]*$", re.MULTILINE)

CLIENT_FILE = Path(__file__).with_name("keyhole_client.py")
_SCRIPT_END = "BWVISU_KEYHOLE_CLIENT_EOF"
_TOKEN_END = "BWVISU_KEYHOLE_TOKEN_EOF"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.~+/=-]+")


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
