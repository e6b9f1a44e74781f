"""Batches of frames for the offline counting driver: grouping same-size frames, the frames
read ahead for calibration and the scale probe, and what the inference thread hands back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from streamcount.detect.boxes import Detections
from streamcount.messages import Frame
from streamcount.pipeline.stages import StageTimes


@dataclass(frozen=True)
class Inferred:
    """What the inference thread hands over for one batch."""

    size: tuple[int, int]  # density model input size
    densities: np.ndarray
    people: list[Detections] | None  # None: not detected (``density`` counting)


@dataclass(frozen=True)
class Batch:
    """Frames of one input size, stacked for one ``infer`` call."""

    frames: tuple[Frame, ...]
    size: tuple[int, int]

    def array(self) -> np.ndarray:
        return np.stack([f.image for f in self.frames])


def batches(frames: Iterator[Frame], batch: int, stop: threading.Event) -> Iterator[Batch]:
    """Groups consecutive frames of the same size into batches of at most ``batch``."""
    pending: list[Frame] = []
    for frame in frames:
        if stop.is_set():
            break
        if pending and frame.image.shape[:2] != pending[0].image.shape[:2]:
            yield Batch(tuple(pending), pending[0].image.shape[:2])
            pending = []
        pending.append(frame)
        if len(pending) >= batch:
            yield Batch(tuple(pending), pending[0].image.shape[:2])
            pending = []
    if pending and not stop.is_set():
        yield Batch(tuple(pending), pending[0].image.shape[:2])


def chain(head: list[Frame], rest: Iterator[Frame], times: StageTimes) -> Iterator[Frame]:
    """The frames read ahead, then the rest; time spent waiting for the reader is accounted
    as ``wait for decoded frames``."""
    yield from head
    while True:
        t0 = time.perf_counter()
        frame = next(rest, None)
        times.add("wait for decoded frames", time.perf_counter() - t0)
        if frame is None:
            return
        yield frame


def calibration_set(frames: Sequence[Frame]) -> list[np.ndarray]:
    """Calibration frames of the most common size (int8 calibration wants one shape)."""
    if not frames:
        return []
    shape = max({f.image.shape for f in frames}, key=lambda s: sum(f.image.shape == s for f in frames))
    return [f.image for f in frames if f.image.shape == shape]
