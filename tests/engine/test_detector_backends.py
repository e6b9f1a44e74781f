"""The person detector through the CPU backends: same boxes as fp32 PyTorch, any input size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcount.detect.boxes import decode
from streamcount.detect.detector import Detector
from streamcount.engine.cache import ArtefactCache
from streamcount.engine.factory import create_backend
from streamcount.errors import ModelError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "yolo_fastest_body"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A real vtest.avi frame at 416x416 (the parity fixture's input)."""
    return cv2.imread(str(FIXTURE / "input_bgr.png"), cv2.IMREAD_COLOR)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["onnx", "openvino"])
def test_backend_matches_torch(name: str, frame: np.ndarray, cache: ArtefactCache) -> None:
    torch_be = create_backend("torch", "yolo_fastest_body", threads=2)
    other = create_backend(name, "yolo_fastest_body", threads=2)
    assert other.name == name
    for size in [(416, 416), (320, 448)]:
        x = cv2.resize(frame, size[::-1])[None]
        ref, out = torch_be.infer(x), other.infer(x)
        assert out.shape == ref.shape == (1, 3 * (size[0] * size[1] // 32 ** 2) * 5, 6)
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-4)
        a, b = decode(ref[0], (576, 768)), decode(out[0], (576, 768))
        assert len(a) == len(b) >= 3
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.5)


@pytest.mark.slow
def test_detector_finds_the_walkers(frame: np.ndarray, cache: ArtefactCache) -> None:
    det = Detector(backend="onnx", threads=2)
    assert det.input_size == (416, 416) and det.score_threshold == 0.4
    full = cv2.resize(frame, (768, 576))
    people = det.detect([full, full[:288]])
    assert 3 <= len(people[0]) <= 10
    assert people[0].boxes[:, 2].max() <= 768 and people[0].boxes[:, 3].max() <= 576
    assert people[1].boxes[:, 3].max() <= 288


def test_detector_refuses_a_density_model(model_file: Path) -> None:
    with pytest.raises(ModelError, match="not a detector"):
        Detector(model_file, backend="torch")


@pytest.mark.slow
def test_float_backend_is_the_first_that_loads(frame: np.ndarray, cache: ArtefactCache) -> None:
    det = Detector(threads=1)
    assert det.backend.name == "openvino"  # installed in the dev extras
    ref = Detector(backend="torch", threads=1)
    a, b = det.detect([frame])[0], ref.detect([frame])[0]
    assert len(a) == len(b) and np.allclose(a.boxes, b.boxes, atol=0.5)


def test_int8_is_refused_for_the_detector() -> None:
    from streamcount.errors import BackendError

    with pytest.raises(BackendError, match="int8 is checked against fp32 density counts only"):
        create_backend("onnx-int8", "yolo_fastest_body")
