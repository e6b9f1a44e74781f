"""``${ENV}`` and secret references."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcount.config.secrets import SubstitutionError, read_secret, substitute


def test_env_forms() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert substitute("x${A}y", env=env) == ("x1y", True)
    assert substitute("${EMPTY:-d}/${B:-}", env=env) == ("d/", True)
    assert substitute("cost $$5", env=env) == ("cost $5", True)
    assert substitute("plain", env=env) == ("plain", False)
    with pytest.raises(SubstitutionError, match="environment variable B is not set"):
        substitute("${B}", env=env)
    with pytest.raises(SubstitutionError, match="malformed"):
        substitute("${1x}", env=env)


def test_secret_forms(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2\n\n")
    env = {"STREAMCOUNT_SECRETS_DIR": str(tmp_path)}
    assert read_secret("pw", env) == "hunter2"
    assert substitute("${secret:pw}", "password", env) == ("hunter2", True)
    assert substitute("/run/secrets/pw", "password", env) == ("hunter2", True)
    assert substitute("/run/secrets/pw", "ca_file", env)[0] == str(tmp_path / "pw")
    with pytest.raises(SubstitutionError, match="secret 'nope' not found"):
        substitute("${secret:nope}", "password", env)
    with pytest.raises(SubstitutionError, match="invalid secret name"):
        read_secret("../etc/passwd", env)
