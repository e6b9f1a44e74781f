"""int8 calibration belongs to the model: a second, different clip reuses the model's cached
calibration (only auto's fp32 parity check runs on it), and ``calibration="clip"`` still
recalibrates on the clip. Real OpenVINO + NNCF on real video."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import pytest
import torch

from streamcount.engine.factory import BACKENDS
from streamcount.engine.preprocess import plan_input_size
from streamcount.models.card import ModelCard
from streamcount.models.registry import build
from streamcount.models.weights import save_model
from streamcount.pipeline.offline import count_input

pytestmark = pytest.mark.skipif(BACKENDS["openvino-int8"].missing() != [],
                                reason="OpenVINO / NNCF not installed")


def int8_artefacts(cache: Path) -> list[Path]:
    """Complete int8 artefact directories in the cache (each one is a calibration made)."""
    d = cache / "openvino-int8"
    return sorted(p.parent for p in d.glob("*/meta.json")) if d.is_dir() else []


def other_clip(vtest: Path, out: Path, frames: int = 48) -> Path:
    """A clip the model has never seen: vtest's lower right part, another size and codec."""
    cap = cv2.VideoCapture(str(vtest))
    with av.open(str(out), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 400, 304, "yuv420p"
        for _ in range(frames):
            ok, frame = cap.read()
            if not ok:
                break
            crop = cv2.flip(frame[200:504, 300:700], 1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(crop, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cap.release()
    return out


@pytest.mark.slow
def test_second_clip_reuses_the_models_calibration(vtest_avi: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("STREAMCOUNT_CACHE", str(cache))
    torch.manual_seed(0)
    model = tmp_path / "student.safetensors"
    save_model(model, build("csrnet_1_4"), ModelCard.for_arch("csrnet_1_4", "test-student"))
    clip_b = other_clip(vtest_avi, tmp_path / "other.mp4")
    common = dict(model=str(model), backend="openvino-int8", max_side=256, progress=False)

    first = count_input(vtest_avi, fps=1.0, out_dir=tmp_path / "a", **common)
    built = int8_artefacts(cache)
    assert len(built) == 1  # the model's calibration, made on the first clip's frames
    assert first["backend"]["quantization"]["calibration"] == "calibrated on these frames"
    assert "vtest" in first["backend"]["quantization"]["calibration_source"]

    second = count_input(clip_b, out_dir=tmp_path / "b", **common)
    assert int8_artefacts(cache) == built  # no calibration for the new clip
    q = second["backend"]["quantization"]
    assert q["calibration"] == "cached for the model"
    assert "vtest" in q["calibration_source"]
    assert second["frames_processed"] == 48
    assert second["input_size"] == list(plan_input_size(304, 400, 256, 8))

    third = count_input(clip_b, out_dir=tmp_path / "c", calibration="clip", **common)
    assert len(int8_artefacts(cache)) == 2  # recalibrated on this clip, as asked
    assert third["backend"]["quantization"]["calibration"] == "calibrated on these frames"
    # ... for that clip only: the model's calibration is still the first clip's
    fourth = count_input(clip_b, out_dir=tmp_path / "d", **common)
    assert len(int8_artefacts(cache)) == 2
    assert "vtest" in fourth["backend"]["quantization"]["calibration_source"]


@pytest.mark.slow
def test_auto_checks_a_reused_calibration_against_fp32_on_the_new_clip(
        vtest_avi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("STREAMCOUNT_CACHE", str(cache))
    torch.manual_seed(0)
    model = tmp_path / "student.safetensors"
    save_model(model, build("csrnet_1_4"), ModelCard.for_arch("csrnet_1_4", "test-student"))
    common = dict(model=str(model), backend="auto", max_side=256, progress=False)
    count_input(vtest_avi, fps=1.0, out_dir=tmp_path / "a", **common)
    built = int8_artefacts(cache)
    second = count_input(other_clip(vtest_avi, tmp_path / "other.mp4"), out_dir=tmp_path / "b",
                         **common)
    assert int8_artefacts(cache) == built
    parity = second["auto"]["parity"]
    assert parity is not None and 1 <= parity["frames"] <= 8
    assert parity["calibration"] == "reused" and parity["reference"] in ("openvino", "torch")
    # kept only within auto's tolerance; otherwise a float backend counts the clip
    if parity["accepted"]:
        assert second["backend"]["backend"] == "openvino-int8" and parity["deviation"] <= 0.02
    else:
        assert second["backend"]["precision"] in ("bf16", "fp32")
