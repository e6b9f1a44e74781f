"""The scheduler: media-time and wall-time sampling, batching across cameras, health gating,
region counting, camera removal; with a real (randomly initialised) CSRNet 1/4 backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from streamcount.engine.torch_cpu import TorchBackend
from streamcount.models.card import ModelCard
from streamcount.models.registry import build
from streamcount.messages import Frame, RegionCounts
from streamcount.regions import Region
from streamcount.pipeline.scheduler import FrameSampler, Scheduler
from streamcount.sources.health import StreamHealth
from streamcount.sources.slots import FifoSlot, LatestSlot

pytestmark = pytest.mark.timeout(60)

LEFT = Region("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
RIGHT = Region("right", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)))


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    torch.manual_seed(0)
    return TorchBackend(build("csrnet_1_4"), ModelCard.for_arch("csrnet_1_4", "random"),
                        threads=1)


def textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def frame(cam: str, i: int, pts: float, h: int = 96, w: int = 128) -> Frame:
    return Frame(camera=cam, index=i, pts_s=pts, wall_ts=time.time(), image=textured(h, w, i))


class Collector:
    def __init__(self) -> None:
        self.counts: list[RegionCounts] = []
        self.unhealthy: list[tuple[str, int, str]] = []
        self.batches: list[int] = []
        self._cond = threading.Condition()

    def on_counts(self, rc: RegionCounts, f: Frame) -> None:
        with self._cond:
            self.counts.append(rc)
            self._cond.notify_all()

    def on_unhealthy(self, cam: str, f: Frame, reason: str) -> None:
        with self._cond:
            self.unhealthy.append((cam, f.index, reason))
            self._cond.notify_all()

    def on_batch(self, latency: float, size: int) -> None:
        self.batches.append(size)

    def wait(self, n: int, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.counts) + len(self.unhealthy) >= n,
                                       timeout)


@pytest.fixture
def sched(backend: TorchBackend) -> Iterator[tuple[Scheduler, Collector]]:
    col = Collector()
    s = Scheduler(backend, col.on_counts, on_unhealthy=col.on_unhealthy,
                  on_batch=col.on_batch, max_batch=4, max_wait_ms=50)
    yield s, col
    s.stop()


@pytest.mark.parametrize("fps, times, kept", [
    (2.0, [0.0, 0.1, 0.4, 0.5, 0.6, 0.99, 1.0, 1.7], [0.0, 0.5, 1.0, 1.7]),
    (10.0, [0.0, 0.1, 0.2], [0.0, 0.1, 0.2]),
    (1.0, [0.0, 5.0, 5.5, 6.0], [0.0, 5.0, 6.0]),  # a gap is skipped, no burst
])
def test_frame_sampler(fps: float, times: list[float], kept: list[float]) -> None:
    s = FrameSampler(fps)
    out = []
    for t in times:
        if s.due(t):
            s.take(t)
            out.append(t)
    assert out == kept


def test_file_camera_sampled_by_media_time(sched: tuple[Scheduler, Collector]) -> None:
    s, col = sched
    slot = FifoSlot(4, on_put=s.wake)
    s.add_camera("file", slot, fps=2.0, regions=[LEFT, RIGHT], media_clock=True)
    s.start()
    for i in range(20):  # 2 s of a 10 fps file, lossless hand-over
        assert slot.put(frame("file", i, i / 10), timeout=10)
    assert col.wait(4)
    time.sleep(0.2)
    assert [c.pts_s for c in col.counts] == [0.0, 0.5, 1.0, 1.5]
    assert [c.index for c in col.counts] == [0, 5, 10, 15]
    stats = s.feed_stats("file")
    assert stats is not None and stats.processed == 4 and stats.skipped == 16


def test_counts_cover_regions_and_all(sched: tuple[Scheduler, Collector]) -> None:
    s, col = sched
    slot = LatestSlot(1, on_put=s.wake)
    s.add_camera("cam", slot, fps=5.0, regions=[LEFT, RIGHT])
    s.start()
    slot.put(frame("cam", 0, 0.0))
    assert col.wait(1)
    c = col.counts[0].counts
    assert set(c) == {"left", "right", "all"}
    assert c["left"] + c["right"] == pytest.approx(c["all"], rel=1e-5)
    assert c["all"] != 0.0


def test_camera_gain_multiplies_its_density_counts(sched: tuple[Scheduler, Collector]) -> None:
    """Two cameras see the same frame; the one calibrated with gain 2.5 counts 2.5x."""
    s, col = sched
    plain, scaled = FifoSlot(2, on_put=s.wake), FifoSlot(2, on_put=s.wake)
    s.add_camera("plain", plain, fps=5.0, regions=[LEFT], media_clock=True)
    s.add_camera("scaled", scaled, fps=5.0, regions=[LEFT], media_clock=True, gain=2.5)
    with pytest.raises(ValueError, match="gain"):
        s.add_camera("bad", FifoSlot(1), fps=1.0, gain=0.0)
    s.start()
    for name, slot in (("plain", plain), ("scaled", scaled)):
        assert slot.put(Frame(camera=name, index=0, pts_s=0.0, wall_ts=time.time(),
                              image=textured(96, 128, 7)), timeout=10)
    assert col.wait(2)
    by = {c.camera: c.counts for c in col.counts}
    for key in ("left", "all"):
        assert by["scaled"][key] == pytest.approx(2.5 * by["plain"][key], rel=1e-4)


def test_batches_cameras_of_the_same_size(backend: TorchBackend) -> None:
    col = Collector()
    s = Scheduler(backend, col.on_counts, on_batch=col.on_batch, max_batch=4,
                  max_wait_ms=200)
    slots = {name: LatestSlot(1, on_put=s.wake) for name in ("a", "b", "c")}
    for name, slot in slots.items():
        s.add_camera(name, slot, fps=1.0)
    slots["a"].put(frame("a", 0, 0.0))
    slots["b"].put(frame("b", 0, 0.0))
    slots["c"].put(frame("c", 0, 0.0, h=64, w=64))  # another input size: its own batch
    s.start()
    try:
        assert col.wait(3)
    finally:
        s.stop()
    assert sorted(col.batches) == [1, 2]
    assert sorted(c.camera for c in col.counts) == ["a", "b", "c"]
    # the same frame content gives the same count batched or not
    single = backend.infer(frame("a", 0, 0.0).image[None])[0].sum()
    a = next(c for c in col.counts if c.camera == "a")
    assert a.counts["all"] == pytest.approx(float(single), rel=1e-4)


def test_unhealthy_frames_skip_inference(sched: tuple[Scheduler, Collector]) -> None:
    s, col = sched
    health = StreamHealth(black_level=8, uniform_std=3, frozen_s=60)
    health.set_source("streaming")
    slot = FifoSlot(4, on_put=s.wake)
    s.add_camera("cam", slot, fps=10.0, media_clock=True, health=health)
    s.start()
    black = Frame(camera="cam", index=0, pts_s=0.0, wall_ts=time.time(),
                  image=np.zeros((96, 128, 3), np.uint8))
    slot.put(black)
    slot.put(frame("cam", 1, 0.1))
    assert col.wait(2)
    assert col.unhealthy == [("cam", 0, "black frame")]
    assert [c.index for c in col.counts] == [1]
    assert col.batches == [1]


def test_live_camera_takes_newest_frame_and_drops_the_rest(
        sched: tuple[Scheduler, Collector]) -> None:
    s, col = sched
    slot = LatestSlot(1, on_put=s.wake)
    s.add_camera("cam", slot, fps=5.0)
    s.start()
    for i in range(40):  # a 40 fps producer for 1 s against 5 inferences/s
        slot.put(frame("cam", i, i / 40))
        time.sleep(0.025)
    # every frame is either processed or dropped (the last one is taken when due)
    deadline = time.monotonic() + 20
    while slot.dropped + len(col.counts) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    processed = [c.index for c in col.counts]
    assert 1 <= len(processed) < 40
    assert processed == sorted(processed) and processed[-1] == 39
    assert slot.dropped + len(processed) == 40 and len(slot) == 0
    stats = s.feed_stats("cam")
    assert stats is not None and stats.age_p50_s is not None and stats.age_p50_s >= 0


def test_removed_camera_gets_no_more_results(sched: tuple[Scheduler, Collector]) -> None:
    s, col = sched
    slot = LatestSlot(1, on_put=s.wake)
    s.add_camera("cam", slot, fps=50.0)
    s.start()
    slot.put(frame("cam", 0, 0.0))
    assert col.wait(1)
    s.remove_camera("cam")
    slot.put(frame("cam", 1, 0.1))
    time.sleep(0.3)
    assert [c.index for c in col.counts] == [0]
    assert s.cameras == () and s.feed_stats("cam") is None
    with pytest.raises(ValueError):
        s.add_camera("x", slot, fps=0)


def test_overload_is_shared_fairly_and_drops_are_counted(backend: TorchBackend) -> None:
    """Six live cameras asking for far more inferences than the backend delivers: each gets
    about the same share, and every frame not inferred is counted as dropped."""
    col = Collector()
    s = Scheduler(backend, col.on_counts, max_batch=2, max_wait_ms=5)
    slots = {f"cam{i}": LatestSlot(1, on_put=s.wake) for i in range(6)}
    for name, slot in slots.items():
        s.add_camera(name, slot, fps=50.0)
    produced = dict.fromkeys(slots, 0)
    stop = threading.Event()

    def produce(name: str) -> None:
        i = 0
        while not stop.is_set():
            slots[name].put(frame(name, i, i / 50, h=240, w=320))
            produced[name] = i = i + 1
            time.sleep(0.02)

    threads = [threading.Thread(target=produce, args=(n,), daemon=True) for n in slots]
    s.start()
    for t in threads:
        t.start()
    time.sleep(4.0)
    stop.set()
    for t in threads:
        t.join()
    s.stop()
    per_cam = {n: sum(c.camera == n for c in col.counts) for n in slots}
    assert sum(per_cam.values()) < 0.5 * sum(produced.values())  # really overloaded
    mean = sum(per_cam.values()) / len(per_cam)
    assert all(abs(v - mean) <= max(2.0, 0.2 * mean) for v in per_cam.values()), per_cam
    for n, slot in slots.items():  # every frame was inferred, dropped, or is still waiting
        assert per_cam[n] + slot.dropped + len(slot) == produced[n]
