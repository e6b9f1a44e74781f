"""Automatic inference scale per camera, from the height of the people the detector sees.

A density model counts people right at the sizes it was trained on and overcounts large,
whole-body people (on ``vtest.avi``, where walkers are about 79 px tall at 768x576, the default
model's per-frame MAE is 4.72 at native size, 2.06 at max side 640, 1.40 at 512, 1.43 at 448,
1.35 at 384 and 2.29 at 320). So the density model's input is scaled for people to be about
:data:`TARGET_PERSON_HEIGHT` pixels tall.

Person heights are taken only from frames where the detector explains the density (the hybrid
rule's frame gate, :func:`streamcount.detect.hybrid.sparse_frame`): in crowds the detector
sees only the large people in front, whose height says nothing about the crowd behind, and the
scale stays 1. The estimate is a running median-of-frames, updated slowly (:class:`ScaleEstimator`).
Where the scale would fall below ``min_scale`` (people so large that the density model would
see too little context), the camera is handed to detection (``ScaleChoice.detect_only``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streamcount.detect.boxes import Detections
from streamcount.detect.hybrid import HybridRule, sparse_frame

if TYPE_CHECKING:
    from streamcount.detect.detector import Detector
    from streamcount.engine.base import Backend

log = logging.getLogger(__name__)

#: person height (model-input pixels) at which the default density model counts vtest.avi's
#: walkers best (448-512 px max side for 79 px people: 46-53 px; see the module docstring)
TARGET_PERSON_HEIGHT = 50.0
#: below this scale the density model sees too little context: count by detection
MIN_SCALE = 0.25
#: frames whose detections have fewer people than this do not update the estimate
MIN_PEOPLE = 2


@dataclass(frozen=True)
class ScaleChoice:
    """The density model's input scale for one camera.

    Attributes:
        scale: factor applied to the frame (never above 1: frames are not upscaled).
        person_height: the estimated person height in frame pixels (None: no estimate yet).
        frames: sparse frames the estimate is based on.
        detect_only: people are so large that the camera should be counted by detection.
    """

    scale: float
    person_height: float | None
    frames: int
    detect_only: bool = False

    def max_side(self, height: int, width: int) -> int:
        """The longest model-input side for a ``height x width`` frame at this scale."""
        return max(1, int(round(max(height, width) * self.scale)))


class ScaleEstimator:
    """Running estimate of one camera's person height, and the scale it implies.

    Args:
        target: person height wanted at the density model's input, pixels.
        min_scale: smallest scale before the camera is handed to detection.
        alpha: weight of a new frame's median height once ``warmup`` frames were seen (a slow
            exponential average; the first ``warmup`` frames are averaged equally).
        warmup: frames averaged equally before the exponential update starts.

    Example:
        >>> est = ScaleEstimator()
        >>> people = Detections(np.array([[0, 0, 30, 100], [50, 0, 80, 100]], np.float32),
        ...                     np.array([0.9, 0.8], np.float32))
        >>> est.update(people, sparse=True)
        >>> est.choice().scale
        0.5
    """

    def __init__(self, target: float = TARGET_PERSON_HEIGHT, min_scale: float = MIN_SCALE,
                 alpha: float = 0.02, warmup: int = 16) -> None:
        if target <= 0 or not 0 < min_scale <= 1 or not 0 < alpha <= 1:
            raise ValueError("target must be > 0, min_scale and alpha in (0, 1]")
        self.target = target
        self.min_scale = min_scale
        self.alpha = alpha
        self.warmup = warmup
        self.height: float | None = None
        self.frames = 0

    def update(self, detections: Detections, *, sparse: bool) -> None:
        """Account one frame: its detections and whether the detector explains its density."""
        if not sparse or len(detections) < MIN_PEOPLE:
            return
        h = float(np.median(detections.heights))
        self.frames += 1
        if self.height is None:
            self.height = h
        else:
            w = 1.0 / self.frames if self.frames <= self.warmup else self.alpha
            self.height += w * (h - self.height)

    def choice(self) -> ScaleChoice:
        """The scale for the density model now (1 until there is an estimate)."""
        if self.height is None or self.height <= 0:
            return ScaleChoice(1.0, None, self.frames)
        raw = self.target / self.height
        if raw < self.min_scale:
            return ScaleChoice(self.min_scale, self.height, self.frames, detect_only=True)
        return ScaleChoice(min(1.0, raw), self.height, self.frames)


#: frames per inference call of :func:`probe_scale` (batches keep every core busy)
PROBE_BATCH = 8


def probe_scale(images: Sequence[np.ndarray], density: Backend, detector: Detector,
                rule: HybridRule | None = None,
                estimator: ScaleEstimator | None = None) -> ScaleChoice:
    """Estimate a camera's scale from some of its frames (uint8 BGR, all one size).

    Args:
        images: frames at the size the density model would otherwise see.
        density: a density backend for the frame gate (fp32 is enough: a few frames).
        detector: the person detector.
        rule: the hybrid rule whose frame gate selects the frames used.
        estimator: the estimator to update (default: a new one).
    """
    est = estimator or ScaleEstimator()
    for i in range(0, len(images), PROBE_BATCH):
        chunk = list(images[i:i + PROBE_BATCH])
        densities = density.infer(np.stack(chunk))
        for d, people in zip(densities, detector.detect(chunk), strict=True):
            est.update(people, sparse=sparse_frame(float(d.sum()), len(people), rule))
    choice = est.choice()
    log.info("scale probe: %d of %d frames sparse, person height %s px -> scale %.2f%s",
             choice.frames, len(images),
             "?" if choice.person_height is None else f"{choice.person_height:.0f}",
             choice.scale, " (people too large for density: detection only)"
             if choice.detect_only else "")
    return choice
