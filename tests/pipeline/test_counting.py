"""Per-camera counting method and automatic scale in the live scheduler, on real vtest.avi
frames with the packaged density model and person detector (no stand-ins)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streamcount.detect.boxes import Detections
from streamcount.detect.scale import ScaleEstimator
from streamcount.messages import Frame, RegionCounts
from streamcount.pipeline.counting import APPLY_AFTER, CameraCounting
from streamcount.pipeline.scheduler import Scheduler
from streamcount.sources.slots import FifoSlot

pytestmark = pytest.mark.timeout(240)


def _people(*heights: float) -> Detections:
    boxes = np.array([[10 * i, 0, 10 * i + 8, h] for i, h in enumerate(heights)], np.float32)
    return Detections(boxes, np.full(len(heights), 0.9, np.float32))


def test_scale_applied_after_warmup_and_only_when_it_moves() -> None:
    cc = CameraCounting("auto", "auto")
    image = np.zeros((576, 768, 3), np.uint8)
    empty = np.zeros((72, 96), np.float32)  # the density agrees with the detector: sparse
    assert cc.input_side(576, 768, 960) == 960
    for _ in range(APPLY_AFTER - 1):
        cc.count(image, empty, _people(100, 100))
    assert cc.input_side(576, 768, 960) == 960  # not yet: too few frames
    cc.count(image, empty, _people(100, 100))
    assert cc.input_side(576, 768, 960) == 384  # 50 px target / 100 px people = 0.5
    state = cc.state()
    assert state["scale"]["mode"] == "auto" and state["scale"]["scale"] == 0.5
    assert state["scale"]["person_height_px"] == 100.0 and state["counting"] == "auto"
    for _ in range(3):  # a small drift does not change the input size
        cc.count(image, empty, _people(105, 105))  # < SCALE_STEP from the applied 100
    assert cc.input_side(576, 768, 960) == 384
    assert cc.input_side(576, 768, 320) == 320  # the camera's max_side still caps it


def test_people_too_large_hand_auto_to_detection() -> None:
    cc = CameraCounting("auto", "auto", estimator=ScaleEstimator(min_scale=0.25))
    image = np.zeros((576, 768, 3), np.uint8)
    for _ in range(APPLY_AFTER):
        r = cc.count(image, np.zeros((72, 96), np.float32), _people(400, 400))
    assert cc.effective_method == "detect" and r.method == "detect"
    # the density map only feeds the heat map now: a quarter of the frame
    assert cc.state()["scale"]["detect_only"] and cc.input_side(576, 768, 960) == 192
    assert CameraCounting("detect", "off").input_side(1080, 1920, 960) == 480
    assert CameraCounting("detect", "auto", fixed_max_side=640).input_side(1080, 1920, 640) \
        == 640  # the operator's max_side still wins


def test_explicit_max_side_wins_over_the_automatic_scale() -> None:
    cc = CameraCounting("auto", "auto", fixed_max_side=320)
    image = np.zeros((576, 768, 3), np.uint8)
    for _ in range(2 * APPLY_AFTER):
        cc.count(image, np.zeros((72, 96), np.float32), _people(100, 100))
    assert cc.estimator is None and cc.input_side(576, 768, 320) == 320
    assert cc.state()["scale"] == {"mode": "max_side", "scale": None, "person_height_px": None,
                                   "frames": 0, "detect_only": False, "input_size": None}


def test_density_method_probes_the_scale_on_some_frames_only() -> None:
    cc = CameraCounting("density", "auto")
    assert cc.wants_detection()  # warm-up: every frame
    off = CameraCounting("density", "off")
    assert not off.wants_detection()
    with pytest.raises(ValueError, match="unknown counting method"):
        CameraCounting("boxes")


@pytest.fixture(scope="module")
def vtest_frames(vtest_avi: Path) -> list[np.ndarray]:
    import av

    with av.open(str(vtest_avi)) as c:
        return [f.to_ndarray(format="bgr24") for i, f in zip(range(120), c.decode(video=0))
                if i % 3 == 0]


@pytest.fixture(scope="module")
def density_backend() -> object:
    from streamcount.detect.detector import create_float_backend

    return create_float_backend("default", threads=2)


def _run(backend: object, frames: list[np.ndarray], counting: CameraCounting,
         max_side: int) -> tuple[list[RegionCounts], list[tuple[tuple[int, int], object]]]:
    """Counts of ``frames`` as one file camera through the real scheduler."""
    counts: list[RegionCounts] = []
    seen: list[tuple[tuple[int, int], object]] = []
    done = threading.Event()

    def on_counts(rc: RegionCounts, f: Frame) -> None:
        counts.append(rc)
        if len(counts) == len(frames):
            done.set()

    def on_density(cam: str, f: Frame, density: np.ndarray, boxes: object) -> None:
        seen.append((density.shape, boxes))

    sched = Scheduler(backend, on_counts, on_density=on_density, max_batch=2)  # type: ignore[arg-type]
    slot = FifoSlot(4, on_put=sched.wake)
    sched.add_camera("vtest", slot, fps=1000, max_side=max_side, media_clock=True,
                     counting=counting)
    sched.start()
    try:
        for i, im in enumerate(frames):
            slot.put(Frame("vtest", i, i / 10, time.time(), im))
        assert done.wait(180), f"{len(counts)} of {len(frames)} frames counted"
    finally:
        sched.stop()
    return counts, seen


@pytest.mark.slow
def test_vtest_in_the_scheduler_auto_counting_and_scale(
        vtest_frames: list[np.ndarray], density_backend: object) -> None:
    cc = CameraCounting("auto", "auto")
    counts, seen = _run(density_backend, vtest_frames, cc, 960)
    methods = [rc.method for rc in counts]
    assert set(methods) <= {"detect", "hybrid", "density"}
    assert sum(m != "density" for m in methods) >= len(methods) // 2  # sparse walkers
    # people counted by detection come with their boxes; density frames with none
    assert all((boxes is None) == (m == "density") for m, (_, boxes) in zip(methods, seen))
    # the automatic scale took the density input below the native 768x576, once, and kept it
    first, last = seen[0][0], seen[-1][0]
    assert first == (72, 96) and last[1] < 96
    assert len({shape for shape, _ in seen}) == 2
    state = cc.state()["scale"]
    assert state["mode"] == "auto" and 0.3 < state["scale"] < 0.8
    assert 60 <= state["person_height_px"] <= 120 and state["frames"] >= APPLY_AFTER
    # the count of a frame is small: 2-8 walkers, not the density model's overcount
    assert np.mean([rc.counts["all"] for rc in counts[-10:]]) < 10


@pytest.mark.slow
def test_vtest_with_an_explicit_max_side_keeps_it(vtest_frames: list[np.ndarray],
                                                 density_backend: object) -> None:
    cc = CameraCounting("auto", "auto", fixed_max_side=512)
    counts, seen = _run(density_backend, vtest_frames[:16], cc, 512)
    assert {shape for shape, _ in seen} == {(48, 64)}  # 512 x 384 at stride 8, never rescaled
    assert cc.state()["scale"]["mode"] == "max_side"
    assert all(rc.method in ("detect", "hybrid", "density") for rc in counts)
