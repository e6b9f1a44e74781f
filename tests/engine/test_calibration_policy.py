"""Which int8 artefact a backend loads under each calibration policy (real ArtefactCache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamcount.engine.cache import ArtefactCache, ArtefactKey
from streamcount.engine.quantize import MIN_MODEL_FRAMES, CalibrationRequired, calibration_key
from streamcount.errors import BackendError

FRAMES = [np.zeros((8, 8, 3), np.uint8)] * MIN_MODEL_FRAMES


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
    plan = calibration_key(cache, key("new-clip"), FRAMES, "model", "openvino-int8", "m")
    assert plan == (key("first-clip"), True, False)


def test_model_policy_calibrates_when_nothing_is_cached(tmp_path: Path) -> None:
    plan = calibration_key(ArtefactCache(tmp_path), key("new-clip"), FRAMES, "model",
                           "openvino-int8", "m")
    assert plan == (key("new-clip"), False, True)  # and it becomes the model's


def test_too_few_frames_never_become_the_models_calibration(tmp_path: Path) -> None:
    plan = calibration_key(ArtefactCache(tmp_path), key("one-image"), FRAMES[:1], "model",
                           "openvino-int8", "m")
    assert plan == (key("one-image"), False, False)


@pytest.mark.parametrize(("policy", "remember"), [("clip", False), ("frames", True)])
def test_clip_and_frames_calibrate_on_the_given_frames(tmp_path: Path, policy: str,
                                                       remember: bool) -> None:
    cache = cached(tmp_path, "first-clip")
    plan = calibration_key(cache, key("new-clip"), FRAMES, policy, "openvino-int8", "m")
    assert plan == (key("new-clip"), False, remember)


def test_no_frames_reuses_or_raises(tmp_path: Path) -> None:
    plan = calibration_key(cached(tmp_path / "a", "x"), key(""), [], "clip", "openvino-int8",
                           "m")
    assert plan.key == key("x") and plan.reused
    with pytest.raises(CalibrationRequired, match="none given and none cached"):
        calibration_key(ArtefactCache(tmp_path / "b"), key(""), [], "model", "openvino-int8", "m")


def test_unknown_policy_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="unknown calibration policy 'sometimes'"):
        calibration_key(ArtefactCache(tmp_path), key("c"), FRAMES, "sometimes", "b", "m")
