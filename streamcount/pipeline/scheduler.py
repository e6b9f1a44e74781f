"""The inference scheduler: one thread owning the single Backend for every camera.

For each camera it takes the newest frame when the camera is *due* by its ``fps`` (wall time
for live sources, media time for files), checks the frame's health (black, uniform, frozen:
such frames skip inference), batches frames of the same model input size across cameras (up to
``max_batch``, waiting at most ``max_wait_ms`` for stragglers), resizes them
(:func:`~streamcount.engine.preprocess.prepare_frame`), runs the backend, applies the camera's
:class:`~streamcount.regions.RegionCounter` and hands
:class:`~streamcount.messages.RegionCounts` to ``on_counts``.

A camera with a :class:`~streamcount.pipeline.counting.CameraCounting` is counted by its method
(``auto``: the hybrid detect/density rule, ``density``, ``detect``): the person detector runs
on the batch's frames that need it (one ``detect`` call per batch, created on first use) and its
count map replaces the density map; the camera's automatic scale sets its model input size.

Readers never wait for inference: live slots drop their oldest frame; a file's FIFO blocks its
own reader only. Under overload every camera still gets its turn (longest unserved first), and a
live frame's age stays bounded by one inference round because only the newest frame is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamcount.engine.base import Backend
from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.messages import Frame, RegionCounts
from streamcount.pipeline.counting import CameraCounting
from streamcount.regions import Region, RegionCounter
from streamcount.sources.health import RateMeter, StreamHealth
from streamcount.sources.slots import FrameSlot

log = logging.getLogger(__name__)

#: frame ages kept per camera for percentiles
AGE_WINDOW = 512
#: longest idle sleep between checks (s)
IDLE_WAIT_S = 0.25


class FrameSampler:
    """Keeps the first frame of each ``1/fps`` interval (the same rule as ``count --fps``).

    ``t`` is media time for files and the monotonic clock for live sources. A gap (stream
    outage, overload) skips the missed intervals instead of catching up with a burst.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.period = 1.0 / fps
        self.next_t: float | None = None

    def due(self, t: float) -> bool:
        """Whether a frame at ``t`` is due (does not consume the interval)."""
        return self.next_t is None or t + 1e-6 >= self.next_t

    def take(self, t: float) -> None:
        """Consume the interval ``t`` falls in."""
        if self.next_t is None or t < self.next_t - self.period:  # first frame, or time reset
            self.next_t = t + self.period
            return
        k = max(1, int((t - self.next_t) // self.period) + 1)
        self.next_t += k * self.period


@dataclass(frozen=True)
class FeedStats:
    """A snapshot of one camera's scheduling counters."""

    camera: str
    processed: int
    skipped: int
    unhealthy: int
    processed_fps: float
    age_p50_s: float | None
    age_p95_s: float | None
    age_max_s: float | None
    last_processed_ts: float | None


@dataclass
class _Feed:
    name: str
    slot: FrameSlot
    sampler: FrameSampler
    media_clock: bool
    max_side: int | None
    regions: tuple[Region, ...]
    health: StreamHealth | None
    counting: CameraCounting | None = None
    gain: float = 1.0
    counters: dict[tuple[tuple[int, int], tuple[int, int]], RegionCounter] = field(
        default_factory=dict)
    processed: int = 0
    skipped: int = 0
    unhealthy: int = 0
    rate: RateMeter = field(default_factory=RateMeter)
    ages: deque[float] = field(default_factory=lambda: deque(maxlen=AGE_WINDOW))
    last_processed_ts: float | None = None
    last_served: float = float("-inf")  # monotonic time a frame was last taken


@dataclass(frozen=True)
class _Item:
    feed: _Feed
    frame: Frame
    size: tuple[int, int]


CountsCallback = Callable[[RegionCounts, Frame], None]
UnhealthyCallback = Callable[[str, Frame, str], None]
BatchCallback = Callable[[float, int], None]
#: ``(camera, frame, density, boxes)``: ``boxes`` K x 4 frame pixels of the people counted by
#: detection (None when the camera's frame was counted by density alone)
DensityCallback = Callable[[str, Frame, np.ndarray, "np.ndarray | None"], None]


class Scheduler:
    """Samples, batches and infers frames of many cameras on one thread.

    Args:
        backend: the inference backend (used from the scheduler thread only).
        on_counts: called with each processed frame's counts (scheduler thread).
        on_unhealthy: called with ``(camera, frame, reason)`` for a frame that failed its
            health check (no inference was run).
        on_batch: called with ``(latency_s, batch_size)`` after every ``infer``.
        on_density: called with ``(camera, frame, density, boxes)`` for each processed frame
            before ``on_counts`` (the operator console keeps the latest one per camera);
            ``boxes`` are the people counted by detection (None: density only).
        max_batch: frames per ``infer`` call.
        max_wait_ms: how long a ready frame may wait for others to fill a batch.
        detector: the person detector for cameras counted with detection (default: the
            packaged one, created on first use with ``detector_threads``; if it cannot be
            loaded, every camera is counted by density and the reason is logged once).
        detector_threads: inference threads of the default detector.
        clock, wall: monotonic and wall clocks (injectable for tests).
    """

    def __init__(self, backend: Backend, on_counts: CountsCallback, *,
                 on_unhealthy: UnhealthyCallback | None = None,
                 on_batch: BatchCallback | None = None,
                 on_density: DensityCallback | None = None, max_batch: int = 4,
                 max_wait_ms: float = 20.0, detector: Any = None,
                 detector_threads: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.backend = backend
        self._on_counts = on_counts
        self._on_unhealthy = on_unhealthy
        self._on_batch = on_batch
        self._on_density = on_density
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._clock = clock
        self._wall = wall
        self._detector = detector
        self._detector_threads = detector_threads
        self.detector_error: str | None = None
        self.detect_frames = 0
        self._feeds: dict[str, _Feed] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.frames = 0
        self.errors = 0
        self._latencies: deque[float] = deque(maxlen=AGE_WINDOW)
        self._batch_sizes: deque[int] = deque(maxlen=AGE_WINDOW)

    # -- cameras ---------------------------------------------------------------------------------

    def add_camera(self, name: str, slot: FrameSlot, *, fps: float,
                   regions: Sequence[Region] = (), max_side: int | None = None,
                   media_clock: bool = False, health: StreamHealth | None = None,
                   counting: CameraCounting | None = None, gain: float = 1.0) -> None:
        """Register a camera. ``media_clock``: sample by the frames' media time (files)
        instead of the wall clock (live sources). ``counting``: its counting method and
        automatic scale (None: density at ``max_side``). ``gain`` multiplies its density maps
        (a calibration; detections are not scaled)."""
        if not gain > 0:
            raise ValueError(f"gain must be > 0, got {gain}")
        feed = _Feed(name=name, slot=slot, sampler=FrameSampler(fps), media_clock=media_clock,
                     max_side=max_side, regions=tuple(regions), health=health,
                     counting=counting, gain=float(gain))
        with self._lock:
            if name in self._feeds:
                raise ValueError(f"camera {name!r} is already scheduled")
            self._feeds[name] = feed
        self.wake()

    def remove_camera(self, name: str) -> None:
        """Unregister a camera; results of its frames still in flight are discarded."""
        with self._lock:
            self._feeds.pop(name, None)

    @property
    def cameras(self) -> tuple[str, ...]:
        """Names of the scheduled cameras."""
        with self._lock:
            return tuple(self._feeds)

    def wake(self) -> None:
        """Wake the scheduler (a slot received a frame). Cheap; safe from any thread."""
        self._wake.set()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler thread."""
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in flight (its results are still delivered)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("scheduler did not stop within %.0f s", timeout)

    # -- stats -----------------------------------------------------------------------------------

    def feed_stats(self, name: str) -> FeedStats | None:
        """Counters of one camera (None if not scheduled)."""
        with self._lock:
            feed = self._feeds.get(name)
        if feed is None:
            return None
        ages = np.asarray(feed.ages, dtype=np.float64)
        p50, p95, mx = ((float(np.percentile(ages, 50)), float(np.percentile(ages, 95)),
                         float(ages.max())) if ages.size else (None, None, None))
        return FeedStats(camera=name, processed=feed.processed, skipped=feed.skipped,
                         unhealthy=feed.unhealthy, processed_fps=feed.rate.rate(self._clock()),
                         age_p50_s=p50, age_p95_s=p95, age_max_s=mx,
                         last_processed_ts=feed.last_processed_ts)

    def latency_stats(self) -> dict[str, float | None]:
        """Recent inference latency (seconds) and batch size."""
        lat = np.asarray(self._latencies, dtype=np.float64)
        sizes = np.asarray(self._batch_sizes, dtype=np.float64)
        return {"latency_p50_s": float(np.percentile(lat, 50)) if lat.size else None,
                "latency_p95_s": float(np.percentile(lat, 95)) if lat.size else None,
                "batch_mean": float(sizes.mean()) if sizes.size else None,
                "batches": float(self.batches), "frames": float(self.frames)}

    # -- the loop --------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # a bug or a backend failure: log, keep serving other cameras
                self.errors += 1
                log.exception("scheduler step failed")
                self._stop.wait(0.5)

    def _step(self) -> None:
        self._wake.clear()
        ready = self._collect(set())
        if not ready:
            self._wake.wait(self._idle_wait())
            return
        deadline = self._clock() + self.max_wait_s
        while (len(ready) < self.max_batch and not self._stop.is_set()
               and self._others_pending({it.feed.name for it in ready}, deadline)):
            left = deadline - self._clock()
            if left <= 0:
                break
            self._wake.clear()
            self._wake.wait(left)
            ready += self._collect({it.feed.name for it in ready})
        for group in _group_by_size(ready, self.max_batch):
            self._infer(group)

    def _idle_wait(self) -> float:
        """Sleep until the next live camera is due (bounded), or a slot wakes us."""
        now = self._clock()
        with self._lock:
            dues = [f.sampler.next_t - now for f in self._feeds.values()
                    if not f.media_clock and f.sampler.next_t is not None and len(f.slot)]
        return min([IDLE_WAIT_S] + [max(0.0, d) for d in dues])

    def _others_pending(self, taken: set[str], deadline: float) -> bool:
        """Whether another camera could contribute a frame before ``deadline``."""
        with self._lock:
            feeds = [f for f in self._feeds.values() if f.name not in taken]
        for f in feeds:
            if f.media_clock:
                if len(f.slot):
                    return True
            elif f.sampler.next_t is None or f.sampler.next_t <= deadline:
                if f.health is None or f.health.is_healthy or len(f.slot):
                    return True
        return False

    def _collect(self, taken: set[str]) -> list[_Item]:
        """Due frames of the cameras not in ``taken``, longest-unserved camera first (fair
        under overload); frames failing their health check are reported and left out."""
        now = self._clock()
        with self._lock:
            feeds = [f for f in self._feeds.values() if f.name not in taken]
        feeds.sort(key=lambda f: f.last_served)
        items: list[_Item] = []
        for feed in feeds:
            frame = self._take_due(feed, now)
            if frame is None:
                continue
            feed.last_served = now
            if feed.health is not None:
                ts = frame.pts_s if feed.media_clock else frame.wall_ts
                reason = feed.health.check_frame(frame.image, ts)
                if reason is not None:
                    feed.unhealthy += 1
                    if self._on_unhealthy is not None:
                        self._call(self._on_unhealthy, feed.name, frame, reason)
                    continue
            h, w = frame.image.shape[:2]
            side = feed.max_side
            if feed.counting is not None and side is not None:
                side = feed.counting.input_side(h, w, side)
            size = plan_input_size(h, w, side, self.backend.card.input_multiple)
            items.append(_Item(feed, frame, size))
        return items

    def _take_due(self, feed: _Feed, now: float) -> Frame | None:
        if feed.media_clock:
            while True:  # a file's FIFO: skip frames that are not due by media time
                frame = feed.slot.take()
                if frame is None:
                    return None
                if feed.sampler.due(frame.pts_s):
                    feed.sampler.take(frame.pts_s)
                    return frame
                feed.skipped += 1
        if not feed.sampler.due(now):
            return None
        frame = feed.slot.take()
        if frame is not None:
            feed.sampler.take(now)
        return frame

    def _infer(self, items: list[_Item]) -> None:
        size = items[0].size
        batch = np.stack([prepare_frame(it.frame.image, size) for it in items])
        t0 = self._clock()
        densities = self.backend.infer(batch)
        latency = self._clock() - t0
        self.batches += 1
        self.frames += len(items)
        self._latencies.append(latency)
        self._batch_sizes.append(len(items))
        if self._on_batch is not None:
            self._call(self._on_batch, latency, len(items))
        stride = self.backend.card.output_stride
        people = self._detect(items)
        now, wall = self._clock(), self._wall()
        for it, density, dets in zip(items, densities, people, strict=True):
            feed = it.feed
            with self._lock:
                if self._feeds.get(feed.name) is not feed:
                    continue  # removed (or replaced) while in flight
            frame_hw = it.frame.image.shape[:2]
            counter = feed.counters.get((frame_hw, size))
            if counter is None:
                counter = feed.counters[(frame_hw, size)] = RegionCounter(feed.regions, size,
                                                                          stride, frame_hw)
            density = np.asarray(density, dtype=np.float32)
            if feed.gain != 1.0:
                density = density * np.float32(feed.gain)
            frame = it.frame
            method: str | None = None
            boxes: np.ndarray | None = None
            if feed.counting is None:
                counts = counter.count(density)
            else:
                result = feed.counting.count(frame.image, density, dets, size)
                counts = counter.count(result.count_map)
                method = result.method
                boxes = result.counted.boxes if result.method != "density" else None
            if self._on_density is not None:
                self._call(self._on_density, feed.name, frame, density, boxes)
            feed.processed += 1
            feed.rate.tick(now)
            feed.ages.append(max(0.0, wall - frame.wall_ts))
            feed.last_processed_ts = wall
            rc = RegionCounts(camera=feed.name, index=frame.index, pts_s=frame.pts_s,
                              wall_ts=frame.wall_ts, counts=counts, file=frame.file,
                              method=method)
            self._call(self._on_counts, rc, frame)

    def _detect(self, items: list[_Item]) -> list[Any]:
        """Detections of the items whose camera needs them now (None for the others), from
        one ``detect`` call."""
        want = [i for i, it in enumerate(items)
                if it.feed.counting is not None and it.feed.counting.wants_detection()]
        out: list[Any] = [None] * len(items)
        if not want or self.detector_error is not None:
            return out
        if self._detector is None:
            from streamcount.detect.detector import Detector
            from streamcount.errors import UserError
            try:
                self._detector = Detector(threads=self._detector_threads)
            except UserError as e:
                self.detector_error = str(e)
                log.error("person detector unavailable, counting by density: %s", e)
                return out
        found = self._detector.detect([items[i].frame.image for i in want])
        self.detect_frames += len(want)
        for i, dets in zip(want, found, strict=True):
            out[i] = dets
        return out

    @staticmethod
    def _call(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # a failing consumer must not stop inference
            log.exception("scheduler callback %s failed", getattr(fn, "__name__", fn))


def _group_by_size(items: list[_Item], max_batch: int) -> list[list[_Item]]:
    """Items grouped by input size, in first-seen order, split into chunks of ``max_batch``."""
    groups: dict[tuple[int, int], list[_Item]] = {}
    for it in items:
        groups.setdefault(it.size, []).append(it)
    out: list[list[_Item]] = []
    for group in groups.values():
        for i in range(0, len(group), max_batch):
            out.append(group[i:i + max_batch])
    return out
