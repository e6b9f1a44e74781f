"""Detections message, NMS and decoding of YOLO rows."""

from __future__ import annotations

import numpy as np
import pytest

from streamcount.detect.boxes import Detections, decode, nms


def test_detections_validate_shapes() -> None:
    with pytest.raises(ValueError, match="K x 4"):
        Detections(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="scores must have shape"):
        Detections(np.zeros((2, 4), np.float32), np.zeros(3, np.float32))
    assert len(Detections.empty()) == 0


def test_points_and_heights() -> None:
    d = Detections(np.array([[10, 20, 30, 120]], np.float32), np.array([0.9], np.float32))
    assert d.heights.tolist() == [100]
    assert d.points("foot").tolist() == [[20, 120]]
    assert d.points("head").tolist() == [[20, 30]]
    assert d.points("centre").tolist() == [[20, 70]]
    with pytest.raises(ValueError, match="unknown anchor"):
        d.points("knee")


@pytest.mark.parametrize(("boxes", "scores", "kept"), [
    ([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], [0.8, 0.9, 0.5], [1, 2]),
    ([[0, 0, 10, 10], [6, 0, 16, 10]], [0.9, 0.8], [0, 1]),  # IoU 0.25: both kept
    ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.5, 0.5], [0]),  # ties: the first
    (np.zeros((0, 4)), [], []),
])
def test_nms(boxes: list[list[float]], scores: list[float], kept: list[int]) -> None:
    keep = nms(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), 0.45)
    assert keep.tolist() == kept


def test_decode_thresholds_scales_and_suppresses() -> None:
    rows = np.array([
        [0.5, 0.5, 0.1, 0.2, 0.9, 0.8],    # kept
        [0.51, 0.5, 0.1, 0.2, 0.9, 0.7],   # duplicate of the first: suppressed
        [0.1, 0.1, 0.05, 0.1, 0.5, 0.39],  # below 0.4
        [0.99, 0.9, 0.1, 0.4, 0.9, 0.6],   # clipped at the frame border
    ], np.float32)
    d = decode(rows, (200, 400))
    assert len(d) == 2
    np.testing.assert_allclose(d.boxes[0], [180, 80, 220, 120])
    np.testing.assert_allclose(d.boxes[1], [376, 140, 400, 200])
    np.testing.assert_allclose(d.scores, [0.8, 0.6])
    assert len(decode(rows, (200, 400), score_threshold=0.95)) == 0
    with pytest.raises(ValueError, match="rows"):
        decode(np.zeros((3, 5), np.float32), (10, 10))
