"""Capacity: how many camera streams one machine sustains at a per-stream inference rate.

A trial runs N simulated cameras (:class:`~streamcount.bench.streams.ClipStream`, a looped
clip decoded in real time, one thread each) into latest-frame slots, and the real
:class:`~streamcount.pipeline.scheduler.Scheduler` batching them through one backend - the
service's own stages. It passes when the streams get their target inference rate (mean at least
95% of it, and no stream below 85%). The search doubles N until a trial fails, then bisects;
the result is the largest N that passed, with its frame-to-count latency (from the moment a
frame is handed over by its reader to its count being available).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamcount.bench.streams import ClipStream, DecodeMode, clip_info, start_delays
from streamcount.engine.base import Backend
from streamcount.engine.preprocess import plan_input_size
from streamcount.messages import Frame, RegionCounts
from streamcount.pipeline.scheduler import Scheduler
from streamcount.sources.slots import LatestSlot

log = logging.getLogger(__name__)

#: a trial passes when mean per-stream fps >= MEAN_OK * target and min >= MIN_OK * target
MEAN_OK = 0.95
MIN_OK = 0.85


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of one capacity search shares."""

    clip: Path
    fps: float  # target inferences per second per stream
    max_side: int | None  # model input policy (plan_input_size)
    decode: DecodeMode
    duration_s: float = 6.0  # measured window
    warmup_s: float = 2.0  # streams running before the window opens
    max_batch: int = 16
    max_wait_ms: float = 20.0


@dataclass(frozen=True)
class CapacityTrial:
    """The outcome of N streams."""

    streams: int
    passed: bool
    fps_mean: float
    fps_min: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    batch_mean: float | None
    reader_fps_min: float  # frames handed over per stream per second (decode keeping up?)
    cpu_cores: float  # process CPU time / wall time during the window
    errors: int = 0
    #: live trials (:mod:`streamcount.bench.live_capacity`): frames the readers dropped in the
    #: window (latest-frame slots), the slowest camera's decoded frames/s, the methods counted
    dropped: int | None = None
    decode_fps_min: float | None = None
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class CapacityResult:
    """The search's answer and every trial behind it."""

    backend: dict[str, Any]
    clip: str
    frame_size: tuple[int, int]
    input_size: tuple[int, int]
    target_fps: float
    decode: str
    decode_note: str
    max_streams: int
    capped: bool  # the search stopped at its limit while still passing
    limit: str  # what ran out at max_streams + 1: "inference" | "decode" | "-"
    trials: tuple[CapacityTrial, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["trials"] = [asdict(t) for t in self.trials]
        return d


class _Recorder:
    """Counts and latencies per camera inside the measured window (scheduler thread)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self.window: tuple[float, float] | None = None
        self.counts: dict[str, int] = {}
        self.latencies: list[float] = []

    def __call__(self, rc: RegionCounts, frame: Frame) -> None:
        now = self._wall()
        with self._lock:
            if self.window is None or not self.window[0] <= now <= self.window[1]:
                return
            self.counts[rc.camera] = self.counts.get(rc.camera, 0) + 1
            self.latencies.append(now - frame.wall_ts)


def warm_up(backend: Backend, frame_size: tuple[int, int], max_side: int | None,
            max_batch: int) -> None:
    """Run every batch size once (CUDA graphs are captured per batch shape)."""
    size = plan_input_size(*frame_size, max_side, backend.card.input_multiple)
    gpu = str(backend.describe().get("device", "cpu")).startswith("cuda")
    for b in range(1, (max_batch if gpu else 1) + 1):
        backend.infer(np.zeros((b, *size, 3), np.uint8))


def run_trial(backend: Backend, n: int, s: TrialSettings) -> CapacityTrial:
    """Run ``n`` streams for ``s.warmup_s + s.duration_s`` and measure the window."""
    stop = threading.Event()
    rec = _Recorder()
    sched = Scheduler(backend, rec, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms)
    emit_fps = min(s.fps * 2.0, clip_info(s.clip)[2])
    streams: list[ClipStream] = []
    for i, delay in enumerate(start_delays(n, 1.0 / emit_fps, seed=n)):
        slot = LatestSlot(1, on_put=sched.wake)
        sched.add_camera(f"cam{i}", slot, fps=s.fps, max_side=s.max_side)
        streams.append(ClipStream(f"cam{i}", s.clip, slot, emit_fps=emit_fps, decode=s.decode,
                                  stop=stop, start_delay_s=delay))
    sched.start()
    for st in streams:
        st.start()
    try:
        stop.wait(s.warmup_s)
        emitted0 = [st.emitted for st in streams]
        cpu0, t0 = os.times(), time.time()
        rec.window = (t0, t0 + s.duration_s)
        stop.wait(s.duration_s)
        cpu1, t1 = os.times(), time.time()
        emitted1 = [st.emitted for st in streams]
    finally:
        stop.set()
        for st in streams:
            st.slot.close()
        sched.stop()
        for st in streams:
            st.join(5.0)
    wall = max(1e-6, t1 - t0)
    per_stream = [rec.counts.get(f"cam{i}", 0) / s.duration_s for i in range(n)]
    lat = np.asarray(rec.latencies)
    stats = sched.latency_stats()
    cores = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall
    fps_mean, fps_min = float(np.mean(per_stream)), float(np.min(per_stream))
    return CapacityTrial(
        streams=n, passed=fps_mean >= MEAN_OK * s.fps and fps_min >= MIN_OK * s.fps,
        fps_mean=round(fps_mean, 3), fps_min=round(fps_min, 3),
        latency_p50_s=round(float(np.percentile(lat, 50)), 4) if lat.size else None,
        latency_p95_s=round(float(np.percentile(lat, 95)), 4) if lat.size else None,
        batch_mean=round(stats["batch_mean"], 2) if stats.get("batch_mean") else None,
        reader_fps_min=round(min((b - a) / wall for a, b in zip(emitted0, emitted1,
                                                                 strict=True)), 3),
        cpu_cores=round(cores, 2), errors=sched.errors + sum(st.error is not None
                                                             for st in streams))


def find_capacity(backend: Backend, s: TrialSettings, *, start: int = 1,
                  max_streams: int = 256, max_trials: int = 10,
                  progress: Callable[[CapacityTrial], None] | None = None) -> CapacityResult:
    """Double the stream count from ``start`` until a trial fails, then bisect."""
    h, w, _ = clip_info(s.clip)
    size = plan_input_size(h, w, s.max_side, backend.card.input_multiple)
    warm_up(backend, (h, w), s.max_side, s.max_batch)
    trials: list[CapacityTrial] = []

    def trial(n: int) -> CapacityTrial:
        t = run_trial(backend, n, s)
        log.info("capacity trial: %d streams -> %.2f fps/stream (min %.2f), %s", n, t.fps_mean,
                 t.fps_min, "pass" if t.passed else "fail")
        trials.append(t)
        if progress is not None:
            progress(t)
        return t

    best, fail = search_capacity(lambda n: trial(n).passed, start=start,
                                 max_streams=max_streams, max_trials=max_trials)
    failed = [t for t in trials if not t.passed and t.streams == fail]
    limit = "-"
    if failed:
        ft = failed[-1]
        limit = "decode" if ft.reader_fps_min < MIN_OK * s.fps else "inference"
    return CapacityResult(
        backend=dict(backend.describe()), clip=str(s.clip), frame_size=(h, w), input_size=size,
        target_fps=s.fps, decode=s.decode.name, decode_note=s.decode.note, max_streams=best,
        capped=fail is None and best >= max_streams, limit=limit, trials=tuple(trials))


def search_capacity(passes: Callable[[int], bool], *, start: int = 1, max_streams: int = 256,
                    max_trials: int = 10) -> tuple[int, int | None]:
    """``(largest passing N, smallest failing N or None)``: double from ``start`` until
    ``passes(N)`` is False, then bisect to within 10% (at most ``max_trials`` calls)."""
    calls = 0
    best, fail = 0, None
    n = max(1, start)
    while calls < max_trials:
        calls += 1
        if passes(n):
            best = n
            if n >= max_streams:
                break
            n = min(max_streams, n * 2)
        else:
            fail = n
            break
    while fail is not None and fail - best > max(1, best // 10) and calls < max_trials:
        mid = (best + fail) // 2
        calls += 1
        if passes(mid):
            best = mid
        else:
            fail = mid
    return best, fail


def format_result(r: CapacityResult) -> str:
    """Human-readable summary: one line per trial, then the answer."""
    lines = [f"backend {r.backend.get('backend')} ({r.backend.get('precision', '?')}), "
             f"frames {r.frame_size[1]}x{r.frame_size[0]} -> input {r.input_size[1]}x"
             f"{r.input_size[0]}, target {r.target_fps:g} fps/stream, decode {r.decode}"
             f" ({r.decode_note})",
             f"{'streams':>7} {'fps mean':>8} {'fps min':>8} {'p50 ms':>7} {'p95 ms':>7} "
             f"{'batch':>5} {'reader':>6} {'cores':>5} {'dropped':>7}  result"]
    for t in r.trials:
        p50 = f"{t.latency_p50_s * 1000:.0f}" if t.latency_p50_s is not None else "-"
        p95 = f"{t.latency_p95_s * 1000:.0f}" if t.latency_p95_s is not None else "-"
        lines.append(f"{t.streams:>7} {t.fps_mean:>8.2f} {t.fps_min:>8.2f} {p50:>7} {p95:>7} "
                     f"{t.batch_mean or 0:>5.1f} {t.reader_fps_min:>6.1f} {t.cpu_cores:>5.1f} "
                     f"{'-' if t.dropped is None else t.dropped:>7}  "
                     f"{'pass' if t.passed else 'FAIL'}")
    more = " (search limit reached)" if r.capped else (
        f"; next step limited by {r.limit}" if r.limit != "-" else "")
    lines.append(f"capacity: {r.max_streams} streams at {r.target_fps:g} fps{more}")
    return "\n".join(lines)
