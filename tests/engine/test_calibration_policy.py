"""Which int8 artefact a backend loads under each calibration policy (real ArtefactCache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamcount.engine.cache import ArtefactCache, ArtefactKey
from streamcount.engine.quantize import CalibrationRequired, calibration_key
from streamcount.errors import BackendError

FRAMES = [np.zeros((8, 8, 3), np.uint8)]


def key(calibration: str) -> ArtefactKey:
    return ArtefactKey(model="m", backend="openvino-int8", runtime="ov=1", calibration=calibration,
                       options="recipes")


def cached(tmp_path: Path, calibration: str) -> ArtefactCache:
    cache = ArtefactCache(tmp_path)
    cache.get_or_build(key(calibration), lambda d: (d / "model.xml").write_text("x"))
    cache.remember(key(calibration))
    return cache


def test_model_policy_reuses_the_models_calibration(tmp_path: Path) -> None:
    cache = cached(tmp_path, "first-clip")
    got, reused = calibration_key(cache, key("new-clip"), FRAMES, "model", "openvino-int8", "m")
    assert got == key("first-clip") and reused


def test_model_policy_calibrates_when_nothing_is_cached(tmp_path: Path) -> None:
    got, reused = calibration_key(ArtefactCache(tmp_path), key("new-clip"), FRAMES, "model",
                                  "openvino-int8", "m")
    assert got == key("new-clip") and not reused


def test_clip_policy_calibrates_on_the_given_frames(tmp_path: Path) -> None:
    cache = cached(tmp_path, "first-clip")
    got, reused = calibration_key(cache, key("new-clip"), FRAMES, "clip", "openvino-int8", "m")
    assert got == key("new-clip") and not reused


def test_no_frames_reuses_or_raises(tmp_path: Path) -> None:
    got, reused = calibration_key(cached(tmp_path / "a", "x"), key(""), [], "clip",
                                  "openvino-int8", "m")
    assert got == key("x") and reused
    with pytest.raises(CalibrationRequired, match="none given and none cached"):
        calibration_key(ArtefactCache(tmp_path / "b"), key(""), [], "model", "openvino-int8", "m")


def test_unknown_policy_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="unknown calibration policy 'sometimes'"):
        calibration_key(ArtefactCache(tmp_path), key("c"), FRAMES, "sometimes", "b", "m")
