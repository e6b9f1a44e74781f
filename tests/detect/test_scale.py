"""Automatic inference scale: the estimator (pure) and the probe on real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamcount.detect.boxes import Detections
from streamcount.detect.scale import MIN_SCALE, ScaleChoice, ScaleEstimator


def _people(*heights: float) -> Detections:
    boxes = [[10 * i, 0, 10 * i + h / 3, h] for i, h in enumerate(heights)]
    return Detections(np.array(boxes, np.float32), np.full(len(heights), 0.9, np.float32))


def test_no_estimate_means_full_scale() -> None:
    est = ScaleEstimator()
    assert est.choice() == ScaleChoice(1.0, None, 0)
    est.update(_people(100, 100), sparse=False)  # a crowd frame says nothing
    est.update(_people(100), sparse=True)  # one person is too few
    assert est.choice().scale == 1.0 and est.frames == 0


def test_scale_brings_people_to_the_target_and_never_upscales() -> None:
    est = ScaleEstimator(target=50)
    for _ in range(5):
        est.update(_people(90, 100, 110), sparse=True)
    c = est.choice()
    assert c.person_height == pytest.approx(100) and c.scale == pytest.approx(0.5)
    assert c.max_side(576, 768) == 384 and not c.detect_only
    small = ScaleEstimator(target=50)
    small.update(_people(20, 30), sparse=True)
    assert small.choice().scale == 1.0


def test_slow_update_after_warmup_and_detection_handover() -> None:
    est = ScaleEstimator(target=50, alpha=0.1, warmup=2)
    est.update(_people(100, 100), sparse=True)
    est.update(_people(100, 100), sparse=True)
    est.update(_people(200, 200), sparse=True)  # one odd frame moves the estimate by 10 %
    assert est.height == pytest.approx(110)
    huge = ScaleEstimator(target=50)
    huge.update(_people(400, 420), sparse=True)
    c = huge.choice()
    assert c.detect_only and c.scale == MIN_SCALE
    with pytest.raises(ValueError):
        ScaleEstimator(target=0)


@pytest.mark.slow
def test_probe_on_vtest_and_on_a_crowd(vtest_avi: Path, shanghaitech: Path, cache) -> None:
    import av
    import cv2

    from streamcount.detect.detector import Detector, create_float_backend
    from streamcount.detect.scale import probe_scale

    density = create_float_backend("default", threads=2)
    detector = Detector(threads=2)
    with av.open(str(vtest_avi)) as c:
        frames = [f.to_ndarray(format="bgr24") for i, f in zip(range(64), c.decode(video=0))
                  if i % 4 == 0]
    walkers = probe_scale(frames, density, detector)
    assert walkers.frames >= 10 and 60 <= (walkers.person_height or 0) <= 120
    assert 0.3 < walkers.scale < 0.8 and not walkers.detect_only
    crowd = [cv2.imread(str(p)) for p in sorted(
        (shanghaitech / "part_A" / "test_data" / "images").glob("IMG_1*.jpg"))[:6]]
    assert probe_scale([cv2.resize(im, (768, 576)) for im in crowd], density,
                       detector).scale == 1.0
