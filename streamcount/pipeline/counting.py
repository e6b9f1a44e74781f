"""Per-camera counting method and automatic scale in the live service.

The same rule as ``streamcount count --counting auto --scale auto``
(:mod:`streamcount.detect.hybrid`, :mod:`streamcount.detect.scale`), but continuous: a
camera's :class:`CameraCounting` keeps a :class:`~streamcount.detect.scale.ScaleEstimator`
fed by every frame the scheduler counts, and the density model's input side follows the
estimate slowly:

* the estimate is applied only once :data:`APPLY_AFTER` sparse frames were seen, and then only
  when it moved by more than :data:`SCALE_STEP` (so the input size, the region masks and the
  batches it falls in do not change on every frame);
* an explicit camera ``max_side`` (an operator's choice, e.g. written by ``streamcount
  calibrate`` from counted frames) turns the automatic scale off: it wins;
* a camera whose people are too large for the density model (``detect_only``) is counted by
  detection while the estimate says so.

``counting: density`` with ``scale: auto`` still runs the detector, on every
:data:`DENSITY_PROBE_EVERY`-th frame only, to keep the estimate. A camera counted by
detection (``counting: detect``, or ``auto`` handed to detection) runs the density model at
:data:`DETECT_DENSITY_SCALE` of the frame: its map then only feeds the console's heat map and
the frame gate of the scale estimate, and a full-size density pass would cost more than the
detector itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from streamcount.detect.boxes import Detections
from streamcount.detect.counting import COUNTING_METHODS
from streamcount.detect.hybrid import HybridCount, HybridRule, count_map_for, sparse_frame
from streamcount.detect.scale import ScaleChoice, ScaleEstimator

log = logging.getLogger(__name__)

#: sparse frames the estimator must have seen before its scale is applied
APPLY_AFTER = 8
#: a new estimate is applied when it differs from the applied scale by more than this fraction
SCALE_STEP = 0.1
#: ``counting: density`` + ``scale: auto``: detect on one frame in this many (after warm-up)
DENSITY_PROBE_EVERY = 10
#: density model input scale of a camera counted by detection (see the module docstring)
DETECT_DENSITY_SCALE = 0.25
#: ... but never a longer side than this (or the frame's own)
MIN_DENSITY_SIDE = 128


class CameraCounting:
    """How one camera's frames are counted, and the scale its density model input uses.

    Thread-safety: :meth:`count` and :meth:`input_side` run on the scheduler thread;
    :meth:`state` may be read from any thread.

    Args:
        method: ``auto`` (hybrid rule), ``density`` or ``detect``.
        scale: ``auto`` or ``off``.
        fixed_max_side: the camera's explicit ``max_side`` (None: not set); when set, the
            automatic scale is off.
        rule: the hybrid rule's thresholds.
        estimator: the scale estimator (default: a new one).

    Example:
        >>> cc = CameraCounting("auto", "auto")
        >>> cc.input_side(576, 768, 960)       # no estimate yet: the camera's max_side
        960
    """

    def __init__(self, method: str = "auto", scale: str = "auto", *,
                 fixed_max_side: int | None = None, rule: HybridRule | None = None,
                 estimator: ScaleEstimator | None = None) -> None:
        if method not in COUNTING_METHODS:
            raise ValueError(f"unknown counting method {method!r} "
                             f"(choose from {', '.join(COUNTING_METHODS)})")
        if scale not in ("auto", "off"):
            raise ValueError(f"unknown scale policy {scale!r} (auto, off)")
        self.method = method
        self.rule = rule or HybridRule()
        self.fixed_max_side = fixed_max_side
        self.auto_scale = scale == "auto" and fixed_max_side is None
        self.estimator = (estimator or ScaleEstimator()) if self.auto_scale else None
        self._lock = threading.Lock()
        self._applied: ScaleChoice | None = None  # the estimate in use (None: scale 1)
        self._frames = 0
        self.last_method: str | None = None
        self.last_input_size: tuple[int, int] | None = None

    # -- what the scheduler asks -----------------------------------------------------------------

    @property
    def effective_method(self) -> str:
        """The method now: ``auto`` becomes ``detect`` while people are too large for density."""
        applied = self._applied
        if self.method == "auto" and applied is not None and applied.detect_only:
            return "detect"
        return self.method

    def wants_detection(self) -> bool:
        """Whether the next frame needs the detector."""
        if self.method != "density":
            return True
        if self.estimator is None:
            return False
        return self.estimator.frames < APPLY_AFTER or self._frames % DENSITY_PROBE_EVERY == 0

    def input_side(self, height: int, width: int, max_side: int) -> int:
        """The density model's longest input side for a ``height x width`` frame: ``max_side``
        (the camera's or the service's), or smaller where the automatic scale says so."""
        if self.effective_method == "detect" and self.fixed_max_side is None:
            side = max(min(MIN_DENSITY_SIDE, max(height, width)),
                       int(round(max(height, width) * DETECT_DENSITY_SCALE)))
            return min(max_side, side)
        applied = self._applied
        if applied is None or applied.detect_only:
            return max_side
        return max(1, min(max_side, applied.max_side(height, width)))

    def count(self, image: np.ndarray, density: np.ndarray, detections: Detections | None,
              input_size: tuple[int, int] | None = None) -> HybridCount:
        """Count one frame (uint8 BGR ``image``, its density map, its detections or None when
        :meth:`wants_detection` said no; ``input_size`` the density model's input) and update
        the scale estimate."""
        self._frames += 1
        people = detections if detections is not None else Detections.empty()
        if self.estimator is not None and detections is not None:
            self.estimator.update(people, sparse=sparse_frame(float(density.sum()), len(people),
                                                              self.rule))
            self._maybe_apply(self.estimator.choice())
        method = self.effective_method
        if method != "density" and detections is None:  # not expected; count what we have
            method = "density"
        result = count_map_for(method, density, people, image.shape[:2], self.rule)
        self.last_method = result.method
        if input_size is not None:
            self.last_input_size = (int(input_size[0]), int(input_size[1]))
        return result

    def _maybe_apply(self, choice: ScaleChoice) -> None:
        if choice.person_height is None or choice.frames < APPLY_AFTER:
            return
        old = self._applied
        if (old is not None and old.detect_only == choice.detect_only
                and abs(choice.scale - old.scale) <= SCALE_STEP * old.scale):
            return
        with self._lock:
            self._applied = choice
        log.info("automatic scale: people %.0f px tall over %d sparse frames -> scale %.2f%s",
                 choice.person_height, choice.frames, choice.scale,
                 " (too large for density: counting by detection)" if choice.detect_only
                 and self.method == "auto" else "")

    # -- what the service shows ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The camera-status fields: ``counting`` (configured), ``method`` (of the last frame),
        and ``scale``: ``{mode, scale, person_height_px, frames, detect_only}`` (``mode``
        ``auto``, ``off`` or ``max_side`` when an explicit max_side wins)."""
        with self._lock:
            applied = self._applied
        est = self.estimator
        mode = "auto" if self.auto_scale else ("max_side" if self.fixed_max_side else "off")
        height = est.height if est is not None else None
        return {
            "counting": self.method,
            "method": self.last_method,
            "scale": {
                "mode": mode,
                "scale": None if not self.auto_scale else
                round(applied.scale, 4) if applied is not None else 1.0,
                "person_height_px": None if height is None else round(height, 1),
                "frames": est.frames if est is not None else 0,
                "detect_only": bool(applied is not None and applied.detect_only),
                "input_size": list(self.last_input_size) if self.last_input_size else None,
            },
        }
