"""The `#KEYHOLE-REQUEST-PORTS N` line of a template, expanded into bash (DESIGN.md §2 step 4).

Interim: exports the job id, the keyhole servers and the token file for the real client,
which the keyhole work replaces this body with (same signature).
"""

from __future__ import annotations

import re
import shlex

DIRECTIVE = re.compile(r"^#KEYHOLE-REQUEST-PORTS[ \t]+(\d+)[ \t]*$", re.MULTILINE)


def keyhole_block(count: int, *, job_id: str, token: str, servers: list[str], hostname_suffix: str) -> str:
    """Bash that asks for `count` forwarded ports and exports KEYHOLE_PORT<I> etc."""
    return "\n".join([
        f"export BWVISU_JOB_ID={shlex.quote(job_id)}",
        f"export BWVISU_KEYHOLE_SERVERS={shlex.quote(' '.join(servers))}",
        f"BWVISU_KEYHOLE_PORTS={count}",
        # The token stays a shell variable, never exported into the application's environment.
        f"BWVISU_KEYHOLE_TOKEN={shlex.quote(token)}",
    ])
