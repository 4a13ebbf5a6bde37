from __future__ import annotations

import stat

import pytest

from bwvisu_common.errors import ConfigError
from bwvisu_common.secret_files import ensure_secret_file, read_secret_file


def test_a_secret_is_made_once_private_and_read_back(tmp_path):
    path = tmp_path / "secrets" / "web.password"
    assert ensure_secret_file(path)
    first = read_secret_file(path, "runner-api.password-file", 20)
    assert not ensure_secret_file(path), "an existing secret is never replaced"
    assert read_secret_file(path, "runner-api.password-file") == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_empty_or_short_secrets_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="runner-api.password-file: cannot read"):
        read_secret_file(tmp_path / "nope", "runner-api.password-file")
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ConfigError, match="web.session-secret-file: .* fewer than 32"):
        read_secret_file(tmp_path / "short", "web.session-secret-file", 32)
    with pytest.raises(ConfigError, match="required"):
        read_secret_file("", "runner-api.password-file")
