"""JSON log lines for a site's log shipper: one object per line, the job named, no secret written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bwvisu_common.errors import ConfigError
from bwvisu_common.logs import JsonFormatter, TextFormatter, about_job, log_format, redact, setup_logging
from bwvisu_common.settings import parse_settings
from tests.unit.test_settings import ORIGINAL

TOKEN = "Zx8_kQ2-" + "a1B2c3D4" * 4 + "xyz"  # 43 URL-safe characters, as secrets.token_urlsafe(32)


@pytest.fixture
def written() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("scheduler-adapter"))
    logger = logging.getLogger("bwvisu.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_record_is_one_json_object_with_the_fields_a_shipper_indexes(written):
    logger, out = written
    logger.info("queued %s as Slurm job %d", "job1", 42)
    logger.warning("second line\nwith a newline inside")
    first, second = lines(out)
    assert set(first) == {"time", "level", "service", "logger", "message"}
    assert first["level"] == "INFO" and first["service"] == "scheduler-adapter"
    assert first["logger"] == "bwvisu.test.json" and first["message"] == "queued job1 as Slurm job 42"
    assert str(first["time"]).endswith("+00:00") and "T" in str(first["time"])
    assert second["message"] == "second line\nwith a newline inside", "still one line of JSON"


def test_the_job_id_comes_from_extra_or_from_the_work_on_a_job(written):
    logger, out = written
    logger.info("from extra", extra={"job_id": "abc123"})
    with about_job("def456"):
        logger.info("inside")
        with about_job("nested"):
            logger.info("nested")
        logger.info("inside again")
    logger.info("outside")
    assert [e.get("job_id") for e in lines(out)] == ["abc123", "def456", "nested", "def456", None]


def test_secrets_in_messages_and_tracebacks_are_masked(written):
    logger, out = written
    logger.info("connect to http://gw0:21001/index.html?autoconnect=true&password=hunter2x")
    logger.info("job token %s for job 0123456789abcdef", TOKEN)
    try:
        raise ValueError(f"token={TOKEN}")
    except ValueError:
        logger.exception("failed")
    text = out.getvalue()
    assert "hunter2x" not in text and TOKEN not in text
    url, token, failure = lines(out)
    assert str(url["message"]).endswith("&password=***")
    assert token["message"] == "job token *** for job 0123456789abcdef", "job ids stay readable"
    assert "ValueError: token=***" in str(failure["exception"])


def test_redact_leaves_ordinary_words_alone():
    text = "credentials.dir: no password file /etc/bwvisu/x.password for runner-api (job 0123456789abcdef)"
    assert redact(text) == text
    assert redact('{"secret": "s3cr3t"}') == '{"secret": "***"}'


def test_the_setting_chooses_the_format_and_the_environment_overrides_it(monkeypatch):
    monkeypatch.delenv("BWVISU_LOG_FORMAT", raising=False)
    assert log_format(None) == "text" and log_format("json") == "json"
    monkeypatch.setenv("BWVISU_LOG_FORMAT", "json")
    assert log_format("text") == "json"
    settings = parse_settings(json.dumps({**ORIGINAL, "logging": {"format": "json"}}).encode())
    assert settings.logging.format == "json"
    with pytest.raises(ConfigError, match="logging.format"):
        parse_settings(json.dumps({**ORIGINAL, "logging": {"format": "xml"}}).encode())


def test_setup_logging_json_writes_through_the_root_logger(monkeypatch, capsys):
    monkeypatch.delenv("BWVISU_LOG_FORMAT", raising=False)
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        setup_logging("runner-api", fmt="json")
        logging.getLogger("runner_api.app").info("answered", extra={"job_id": "j1"})
        entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert entry["service"] == "runner-api" and entry["job_id"] == "j1" and entry["message"] == "answered"
    finally:
        root.handlers = saved


def test_text_lines_are_masked_too() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter("runner-api"))
    logger = logging.getLogger("bwvisu.test.text")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connect to http://gw0:21001/?password=hunter2x with %s", TOKEN)
        try:
            raise ValueError(f"token={TOKEN}")
        except ValueError:
            logger.exception("failed for job 0123456789abcdef")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "hunter2x" not in text and TOKEN not in text
    assert " runner-api WARNING bwvisu.test.text: connect to http://gw0:21001/?password=*** with ***" in text
    assert "failed for job 0123456789abcdef" in text and "ValueError: token=***" in text
