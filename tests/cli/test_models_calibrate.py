"""``streamcount models calibrate``: the model's int8 calibration made once on chosen frames,
then reused by ``count`` on another input (real OpenVINO + NNCF)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from streamcount.cli.main import main
from streamcount.engine.factory import BACKENDS


def test_missing_frames_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "calibrate", "default", "/no/such/folder"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["streamcount: error: /no/such/folder: no such file or folder"]


def test_not_an_int8_backend_is_refused(tmp_path: Path, vtest_avi: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "calibrate", "default", str(vtest_avi), "--frames", "2",
                 "--backend", "openvino"]) == 2
    assert "'openvino' is not an int8 backend" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(BACKENDS["openvino-int8"].missing() != [],
                    reason="OpenVINO / NNCF not installed")
def test_count_reuses_the_calibration_made_by_models_calibrate(
        tmp_path: Path, vtest_avi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCOUNT_CACHE", str(tmp_path / "cache"))
    images = tmp_path / "images"
    images.mkdir()
    cap = cv2.VideoCapture(str(vtest_avi))
    for i in range(60):
        ok, frame = cap.read()
        assert ok
        if i % 10 == 0:  # six frames of the scene, as a folder of images
            cv2.imwrite(str(images / f"f{i:03d}.png"), frame[::2, ::2])
    cap.release()
    assert main(["models", "calibrate", "default", str(images), "--frames", "6",
                 "--max-side", "256"]) == 0
    out = tmp_path / "out"
    assert main(["count", str(vtest_avi), "--fps", "0.2", "--max-side", "256",
                 "--backend", "openvino-int8", "--counting", "density", "--out", str(out),
                 "--quiet"]) == 0
    q = json.loads((out / "summary.json").read_text())["backend"]["quantization"]
    assert q["calibration"] == "cached for the model"
    assert q["calibration_source"].startswith(f"{images}: 6 of its 6 images")
    assert q["calibration_frames"] == 6
