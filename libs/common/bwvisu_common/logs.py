"""One logging format for every bwvisu process: text lines for people, or JSON lines for a log shipper.

`logging.format: json` (or BWVISU_LOG_FORMAT=json) writes one JSON object per line with the time,
level, service, logger, message and, when known, the job id: from `extra={"job_id": ...}` or from
`about_job()` around the work on one job (every handler of a durable consumer runs inside it).
In either format, whatever a message says, what looks like a secret (a `password=`/`token=`/`secret=`
value, a long random string such as a job token) is masked before it is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
_JOB: ContextVar[str] = ContextVar("bwvisu_job_id", default="")
# A value after a secret-sounding name (URLs, argv, key=value text), and any run of 40 or more
# URL-safe characters: our tokens and session secrets are 43, job ids 16 and event ids 32.
_NAMED_SECRET = re.compile(r"(?i)((?:password|passwd|token|secret|authorization)[\"']?\s*[=:]\s*[\"']?)"
                           r"([^\s&\"',;]+)")
# An Authorization header's whole value ("Basic <credentials>", "Bearer <token>").
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*:\s*[\"']?)([^\"'\n]+)")
_LONG_RANDOM = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}(?![A-Za-z0-9_-])")
MASK = "***"


@contextlib.contextmanager
def about_job(job_id: str) -> Iterator[None]:
    """Log lines written inside carry `job_id` (JSON format)."""
    token = _JOB.set(job_id)
    try:
        yield
    finally:
        _JOB.reset(token)


def current_job() -> str:
    """The job id of the `about_job` block running now; "" outside one."""
    return _JOB.get()


def redact(text: str) -> str:
    """`text` with every secret-looking value masked."""
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
    return _LONG_RANDOM.sub(MASK, _NAMED_SECRET.sub(lambda m: m.group(1) + MASK, text))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "service": self.service, "logger": record.name,
            "message": redact(record.getMessage()),
        }
        job_id = getattr(record, "job_id", "") or current_job()
        if job_id:
            entry["job_id"] = str(job_id)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A line for people, masked as the JSON lines are."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_format(configured: str | None = None) -> str:
    """The format to use: BWVISU_LOG_FORMAT overrides the setting; text by default."""
    chosen = (os.environ.get("BWVISU_LOG_FORMAT") or configured or "text").lower()
    return chosen if chosen in FORMATS else "text"


def setup_logging(name: str, level: str | None = None, fmt: str | None = None) -> None:
    level = level or os.environ.get("BWVISU_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(name) if log_format(fmt) == "json" else TextFormatter(name))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Their INFO lines are per-request noise; warnings still show.
    for chatty in ("asyncssh", "httpx", "grpc"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def writes_json() -> bool:
    """Whether the root logger writes JSON: then uvicorn's own loggers must pass through it."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
