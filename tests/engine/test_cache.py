"""The artefact cache: keys, build-once, atomic completion, corrupt-artefact rebuild, recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamcount.engine.cache import (ENV_VAR, META_FILE, ArtefactCache, ArtefactKey, cache_root,
                                      frames_fingerprint, model_fingerprint)
from streamcount.models.card import ModelCard
from streamcount.models.registry import build

KEY = ArtefactKey(model="m" * 64, backend="onnx-int8", runtime="rt=1", calibration="c", options="o")


def test_cache_root_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "streamcount"


def test_key_digest_depends_on_every_field() -> None:
    digests = {KEY.digest()}
    for field in ("model", "backend", "runtime", "calibration", "options"):
        digests.add(ArtefactKey(**(KEY.__dict__ | {field: "other"})).digest())
    assert len(digests) == 6
    assert KEY.digest() == ArtefactKey(**KEY.__dict__).digest()


def test_fingerprints() -> None:
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert frames_fingerprint([a]) == frames_fingerprint([a.copy()])
    assert frames_fingerprint([a]) != frames_fingerprint([b])
    assert frames_fingerprint([a, b]) != frames_fingerprint([b, a])
    net = build("mcnn")
    card = ModelCard.for_arch("mcnn", "x")
    fp = model_fingerprint(net, card)
    assert fp == model_fingerprint(net, card.with_(name="renamed"))  # the name is not the model
    assert fp != model_fingerprint(net, card.with_(sha256="f" * 64))
    assert fp != model_fingerprint(build("mcnn"), card)  # other random weights


def test_builds_once_then_hits(tmp_path: Path) -> None:
    cache = ArtefactCache(tmp_path)
    calls: list[Path] = []

    def build_fn(d: Path) -> None:
        calls.append(d)
        (d / "a.bin").write_bytes(b"123")

    d1 = cache.get_or_build(KEY, build_fn)
    d2 = cache.get_or_build(KEY, build_fn)
    assert d1 == d2 == cache.directory(KEY)
    assert len(calls) == 1 and calls[0] != d1  # built in a temporary directory
    assert (d1 / "a.bin").read_bytes() == b"123" and (d1 / META_FILE).is_file()
    assert sorted(p.name for p in d1.parent.iterdir()) == [d1.name]  # no leftovers


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = ArtefactCache(tmp_path)

    def broken(d: Path) -> None:
        (d / "half.bin").write_bytes(b"1")
        raise RuntimeError("calibration failed")

    with pytest.raises(RuntimeError, match="calibration failed"):
        cache.get_or_build(KEY, broken)
    assert cache.lookup(KEY) is None
    assert list(cache.directory(KEY).parent.iterdir()) == []


def test_corrupt_artefact_is_rebuilt(tmp_path: Path) -> None:
    cache = ArtefactCache(tmp_path)
    builds: list[int] = []

    def build_fn(d: Path) -> None:
        builds.append(1)
        (d / "n.txt").write_text("42")

    def load(d: Path) -> int:
        return int((d / "n.txt").read_text())

    assert cache.load(KEY, build_fn, load) == 42
    assert cache.load(KEY, build_fn, load) == 42
    assert len(builds) == 1
    (cache.directory(KEY) / "n.txt").write_text("garbage")
    assert cache.load(KEY, build_fn, load) == 42
    assert len(builds) == 2


def test_remember_and_recall(tmp_path: Path) -> None:
    cache = ArtefactCache(tmp_path)
    probe = ArtefactKey(**(KEY.__dict__ | {"calibration": ""}))
    assert cache.recall(probe) is None
    cache.get_or_build(KEY, lambda d: None)
    cache.remember(KEY)
    assert cache.recall(probe) == KEY
    assert cache.recall(ArtefactKey(**(probe.__dict__ | {"runtime": "rt=2"}))) is None
    cache.invalidate(KEY)
    assert cache.recall(probe) is None  # the remembered artefact is gone
