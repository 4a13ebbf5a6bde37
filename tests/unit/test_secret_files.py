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
    (tmp_path / "short").chmod(0o600)
    with pytest.raises(ConfigError, match="web.session-secret-file: .* fewer than 32"):
        read_secret_file(tmp_path / "short", "web.session-secret-file", 32)
    with pytest.raises(ConfigError, match="required"):
        read_secret_file("", "runner-api.password-file")


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o620, 0o666])
def test_a_secret_file_others_could_read_or_change_is_refused_by_name(tmp_path, mode):
    path = tmp_path / "gateway-gw0.password"
    path.write_text("s3cret-long-enough-to-be-used\n")
    path.chmod(mode)
    with pytest.raises(ConfigError) as refused:
        read_secret_file(path, "credentials.dir")
    message = str(refused.value)
    assert str(path) in message and f"{mode:04o}" in message and "credentials.dir" in message
    assert "s3cret" not in message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_private_or_group_readable_secret_files_are_read(tmp_path, mode):
    path = tmp_path / "runner-api.password"
    path.write_text("s3cret-long-enough-to-be-used\n")
    path.chmod(mode)
    assert read_secret_file(path, "credentials.dir") == "s3cret-long-enough-to-be-used"


def test_a_service_credential_must_be_its_owners_alone(tmp_path) -> None:
    import pytest

    from bwvisu_common.errors import ConfigError
    from bwvisu_common.secret_files import read_secret_file

    path = tmp_path / "keyhole-api.password"
    path.write_text("x" * 32)
    path.chmod(0o640)
    assert read_secret_file(path, "runner-api.password-file") == "x" * 32  # a shared secret may be
    with pytest.raises(ConfigError, match=r"keyhole-api.password has mode 0640; allowed is 0600"):
        read_secret_file(path, "credentials.dir", group_readable=False)
    path.chmod(0o600)
    assert read_secret_file(path, "credentials.dir", group_readable=False) == "x" * 32
