"""Timing a backend: median, min and max milliseconds per ``infer`` call over repeated runs."""

from __future__ import annotations

import time

import numpy as np

from streamcount.engine.base import Backend


def time_backend(backend: Backend, frames: np.ndarray, warmup: int = 2, runs: int = 10,
                 max_seconds: float | None = None) -> dict[str, object]:
    """Time ``backend.infer(frames)``: ``warmup`` untimed calls, then ``runs`` timed ones.

    With ``max_seconds``, timing stops early once that long was spent (after at least 3 runs).
    The first call on a new input shape may compile; warm-up absorbs it. Returns a JSON-ready
    dict: backend, batch, height, width, runs, median_ms/min_ms/max_ms per call,
    ms_per_frame and fps (frames per second at the median).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if frames.ndim != 4:
        raise ValueError(f"expected N x H x W x 3 frames, got shape {frames.shape}")
    for _ in range(max(0, warmup)):
        backend.infer(frames)
    samples: list[float] = []
    started = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        backend.infer(frames)
        samples.append((time.perf_counter() - t0) * 1000.0)
        if max_seconds is not None and i >= 2 and time.perf_counter() - started > max_seconds:
            break
    a = np.asarray(samples)
    n = int(frames.shape[0])
    median = float(np.median(a))
    return {"backend": backend.name, "batch": n, "height": int(frames.shape[1]),
            "width": int(frames.shape[2]), "runs": len(samples), "median_ms": median,
            "min_ms": float(a.min()), "max_ms": float(a.max()), "ms_per_frame": median / n,
            "fps": 1000.0 * n / median}
