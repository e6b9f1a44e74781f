"""Per-frame counting by method (``auto``, ``density``, ``detect``) on top of a density map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from streamcount.detect.boxes import Detections
from streamcount.detect.detector import Detector
from streamcount.detect.hybrid import HybridCount, HybridRule, count_map_for

if TYPE_CHECKING:
    from streamcount.engine.factory import BuildSettings

#: the ``--counting`` choices; ``auto`` is the hybrid rule of :mod:`streamcount.detect.hybrid`
COUNTING_METHODS = ("auto", "density", "detect")
DEFAULT_COUNTING = "auto"


class MethodCounter:
    """Turns density maps (and, unless ``method="density"``, detections) into count maps.

    Args:
        method: ``auto`` (hybrid rule), ``density`` or ``detect``.
        detector: the person detector (created on first use when None and needed).
        rule: the hybrid rule's thresholds.
        backend: backend of the detector when it is created here (default ``"float"``: fp32
            OpenVINO, else ONNX Runtime, else PyTorch; see :data:`~streamcount.detect.detector
            .FLOAT_BACKENDS`).
        threads: its inference threads.
        settings: how its backend is built (e.g. ``throughput`` for offline counting).

    Example:
        >>> counter = MethodCounter("auto")                              # doctest: +SKIP
        >>> result = counter.count([frame], density[None])[0]            # doctest: +SKIP
        >>> result.count, result.method                                  # doctest: +SKIP
    """

    def __init__(self, method: str = DEFAULT_COUNTING, detector: Detector | None = None,
                 rule: HybridRule | None = None, backend: str = "float",
                 threads: int | None = None, settings: BuildSettings | None = None) -> None:
        if method not in COUNTING_METHODS:
            raise ValueError(f"unknown counting method {method!r} "
                             f"(choose from {', '.join(COUNTING_METHODS)})")
        self.method = method
        self.rule = rule or HybridRule()
        self._detector = detector
        self._backend = backend
        self._threads = threads
        self._settings = settings

    @property
    def settings(self) -> BuildSettings | None:
        """How the detector's backend is (to be) built."""
        return self._settings

    @property
    def detector(self) -> Detector | None:
        """The detector (None for ``density``); created on first access."""
        if self.method == "density":
            return None
        if self._detector is None:
            self._detector = Detector(backend=self._backend, threads=self._threads,
                                      settings=self._settings)
        return self._detector

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """The people the detector finds in each frame (none for ``density``)."""
        det = self.detector
        return det.detect(frames) if det is not None else [Detections.empty()] * len(frames)

    def count(self, frames: Sequence[np.ndarray], densities: np.ndarray,
              people: Sequence[Detections] | None = None) -> list[HybridCount]:
        """Count maps for uint8 BGR ``frames`` and their density maps ``N x h x w``; ``people``
        are :meth:`detect`'s results when already known (e.g. detected on another thread)."""
        if people is None:
            people = self.detect(frames)
        return [count_map_for(self.method, d, p, f.shape[:2], self.rule)
                for f, d, p in zip(frames, densities, people, strict=True)]

    def describe(self) -> dict[str, object]:
        """What a summary should record about the counting method."""
        d: dict[str, object] = {"counting": self.method}
        if self.method != "density":
            det = self.detector
            assert det is not None
            d["detector"] = {"model": det.card.name, "sha256": det.card.sha256,
                             "backend": det.backend.name,
                             "input_size": list(det.input_size),
                             "score_threshold": det.score_threshold}
        if self.method == "auto":
            from dataclasses import asdict

            d["hybrid_rule"] = asdict(self.rule)
        return d
