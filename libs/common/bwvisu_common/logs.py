"""One logging format for every bwvisu process."""

from __future__ import annotations

import logging
import os


def setup_logging(name: str, level: str | None = None) -> None:
    level = level or os.environ.get("BWVISU_LOG_LEVEL", "INFO")
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    # Their INFO lines are per-request noise; warnings still show.
    for chatty in ("asyncssh", "httpx", "grpc"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
