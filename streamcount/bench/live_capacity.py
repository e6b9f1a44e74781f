"""Capacity of the live service on real RTSP cameras (``streamcount bench capacity --rtsp``).

Unlike the simulated search of :mod:`streamcount.bench.capacity`, a trial here runs the
service itself: a real gst-rtsp-server (:mod:`streamcount.bench.rtsp_server`) serves a real
clip, re-encoded once to 1080p25 H.264 (2 s GOP, no B-frames, like an IP camera) and looped,
and a :class:`~streamcount.pipeline.service.Service` runs N cameras on that URL - each its own
RTSP session, PyAV reader, latest-frame slot, the shared scheduler with the camera's counting
method and automatic scale, aggregators and event bus - with the cameras' default settings
(``counting: auto``, ``scale: auto``) unless told otherwise.

A trial passes when, over the measured window, every camera gets its inference rate (mean at
least 95 % of the target, none below 85 %: no camera starved), the 95th percentile of
frame-to-count latency is at most ``max_p95_s`` (from the moment a camera's reader hands a
decoded frame over, to its count reaching a sink on the event bus) and the scheduler had no
errors. Frames the readers dropped (latest-frame slots keep only the newest) are counted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamcount.bench.capacity import MEAN_OK, MIN_OK, CapacityResult, CapacityTrial, \
    search_capacity
from streamcount.engine.base import Backend
from streamcount.engine.preprocess import plan_input_size
from streamcount.errors import InputError
from streamcount.messages import CountState, CountUpdate

log = logging.getLogger(__name__)

#: the frame size and rate of the served clip
RTSP_SIZE = (1080, 1920)
RTSP_FPS = 25
#: seconds of the source re-encoded, and how often that is repeated (without re-encoding)
CLIP_SECONDS = 20.0
CLIP_REPEAT = 30
#: how long a trial waits for every camera's first count
CONNECT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LiveSettings:
    """What every live trial of one search shares."""

    url: str  # the RTSP URL every camera opens
    fps: float = 5.0  # inferences per second per camera
    duration_s: float = 10.0  # measured window
    warmup_s: float = 3.0  # after every camera's first count, before the window opens
    max_batch: int = 4
    max_wait_ms: float = 20.0
    max_p95_s: float = 1.0  # frame-to-count latency limit (95th percentile)
    counting: str = "auto"
    scale: str = "auto"
    max_side: int | None = None  # None: the service default


class _Recorder:
    """An event-bus sink: per camera, the OK counts of region ``all`` inside the window and
    their frame-to-count latency."""

    name = "capacity"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.window: tuple[float, float] | None = None
        self.first: set[str] = set()
        self.counts: dict[str, int] = {}
        self.latencies: list[float] = []

    def handle(self, event: object) -> None:
        if not (isinstance(event, CountUpdate) and event.region == "all"
                and event.state is CountState.OK):
            return
        now = time.time()
        with self._lock:
            self.first.add(event.camera)
            if self.window is None or not self.window[0] <= now <= self.window[1]:
                return
            self.counts[event.camera] = self.counts.get(event.camera, 0) + 1
            self.latencies.append(now - event.ts)

    def close(self) -> None:
        """Nothing to release."""


def rtsp_clip(source: str | Path, directory: Path | None = None) -> Path:
    """``source`` as a long 1080p25 H.264 MP4 for the RTSP server (made once, cached): scaled
    to cover 1920x1080 and centre-cropped (no distortion), :data:`CLIP_SECONDS` encoded with
    libx264 and repeated :data:`CLIP_REPEAT` times."""
    from streamcount.bench.rtsp_server import ffmpeg_missing, make_h264_clip, repeat_clip
    from streamcount.engine.cache import cache_root

    src = Path(source)
    if not src.is_file():
        raise InputError(f"source clip not found: {source}")
    missing = ffmpeg_missing()
    if missing:
        raise InputError(f"--rtsp needs ffmpeg to prepare the clip: {missing}")
    h, w = RTSP_SIZE
    d = directory or cache_root() / "bench"
    stem = f"{src.stem}_{w}x{h}_{RTSP_FPS}fps"
    base = make_h264_clip(src, d / f"{stem}_{CLIP_SECONDS:g}s.mp4", seconds=CLIP_SECONDS,
                          width=w, fps=RTSP_FPS, gop=2 * RTSP_FPS,
                          vf=f"scale={w}:{h}:force_original_aspect_ratio=increase,"
                             f"crop={w}:{h}")
    return repeat_clip(base, d / f"{stem}_x{CLIP_REPEAT}.mp4", CLIP_REPEAT)


def live_config(n: int, s: LiveSettings, model: str | None, threads: int | None) -> Any:
    """A service config of ``n`` cameras on ``s.url`` (no HTTP, MQTT or file sinks)."""
    from streamcount.config.schema import ServiceConfig

    cam: dict[str, Any] = {"source": s.url, "fps": s.fps, "counting": s.counting,
                           "scale": s.scale}
    return ServiceConfig.model_validate({
        "http": {"enabled": False},
        "inference": {"model": model, "max_side": s.max_side, "max_batch": s.max_batch,
                      "max_wait_ms": s.max_wait_ms, "threads": threads},
        "cameras": [{"name": f"cam{i}", **cam} for i in range(n)],
    })


def _camera_figures(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return snap.get("cameras", {})


def run_live_trial(backend: Backend, n: int, s: LiveSettings, *, model: str | None = None,
                   threads: int | None = None) -> CapacityTrial:
    """Run the service with ``n`` RTSP cameras and measure one window."""
    from streamcount.pipeline.service import Service

    rec = _Recorder()
    svc = Service(live_config(n, s, model, threads), backend=backend, extra_sinks=(rec,))
    svc.start()
    try:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while len(rec.first) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(rec.first) < n:
            log.warning("capacity: %d of %d cameras counted within %.0f s", len(rec.first), n,
                        CONNECT_TIMEOUT_S)
        time.sleep(s.warmup_s)
        before = _camera_figures(svc.snapshot())
        cpu0, t0 = os.times(), time.time()
        rec.window = (t0, t0 + s.duration_s)
        time.sleep(s.duration_s)
        cpu1, t1 = os.times(), time.time()
        after = _camera_figures(svc.snapshot())
        errors = svc.scheduler.errors if svc.scheduler is not None else 0
    finally:
        svc.stop()
    wall = max(1e-6, t1 - t0)
    names = [f"cam{i}" for i in range(n)]
    per_cam = [rec.counts.get(c, 0) / s.duration_s for c in names]
    lat = np.asarray(rec.latencies)
    p95 = float(np.percentile(lat, 95)) if lat.size else None

    def delta(key: str, cam: str) -> float:
        return float((after.get(cam, {}).get(key) or 0) - (before.get(cam, {}).get(key) or 0))

    emitted = [delta("emitted", c) / wall for c in names]
    decoded = [delta("decoded", c) / wall for c in names]
    dropped = int(sum(delta("dropped", c) for c in names))
    fps_mean, fps_min = float(np.mean(per_cam)), float(np.min(per_cam))
    cores = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall
    passed = (fps_mean >= MEAN_OK * s.fps and fps_min >= MIN_OK * s.fps and p95 is not None
              and p95 <= s.max_p95_s and errors == 0)
    return CapacityTrial(
        streams=n, passed=passed, fps_mean=round(fps_mean, 3), fps_min=round(fps_min, 3),
        latency_p50_s=round(float(np.percentile(lat, 50)), 4) if lat.size else None,
        latency_p95_s=None if p95 is None else round(p95, 4),
        batch_mean=None, reader_fps_min=round(min(emitted), 3), cpu_cores=round(cores, 2),
        errors=errors, dropped=dropped, decode_fps_min=round(min(decoded), 2),
        methods=tuple(sorted({str(after.get(c, {}).get("method")) for c in names})))


def find_live_capacity(backend: Backend, s: LiveSettings, clip: Path, *, start: int = 1,
                       max_streams: int = 64, max_trials: int = 8, model: str | None = None,
                       threads: int | None = None,
                       progress: Callable[[CapacityTrial], None] | None = None
                       ) -> CapacityResult:
    """Double the camera count from ``start`` until a live trial fails, then bisect."""
    from streamcount.bench.streams import clip_info
    from streamcount.engine.preprocess import DEFAULT_MAX_SIDE

    h, w, source_fps = clip_info(clip)
    size = plan_input_size(h, w, s.max_side or DEFAULT_MAX_SIDE, backend.card.input_multiple)
    trials: list[CapacityTrial] = []

    def trial(n: int) -> bool:
        t = run_live_trial(backend, n, s, model=model, threads=threads)
        log.info("live capacity trial: %d cameras -> %.2f fps/camera (min %.2f), p95 %s s, %s",
                 n, t.fps_mean, t.fps_min, t.latency_p95_s, "pass" if t.passed else "fail")
        trials.append(t)
        if progress is not None:
            progress(t)
        return t.passed

    best, fail = search_capacity(trial, start=start, max_streams=max_streams,
                                 max_trials=max_trials)
    failed = [t for t in trials if not t.passed and t.streams == fail]
    limit = "-"
    if failed:
        ft = failed[-1]
        if ft.decode_fps_min is not None and ft.decode_fps_min < MIN_OK * source_fps:
            limit = "decode"
        elif ft.fps_min < MIN_OK * s.fps or ft.fps_mean < MEAN_OK * s.fps:
            limit = "inference"
        else:
            limit = "latency"
    return CapacityResult(
        backend=dict(backend.describe()), clip=str(clip), frame_size=(h, w), input_size=size,
        target_fps=s.fps, decode="software",
        decode_note=f"the service's PyAV readers on {s.url} (gst-rtsp-server, "
                    f"{w}x{h} {source_fps:g} fps H.264); counting {s.counting}, scale {s.scale}",
        max_streams=best, capped=fail is None and best >= max_streams, limit=limit,
        trials=tuple(trials))
