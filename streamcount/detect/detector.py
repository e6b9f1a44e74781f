"""Person detection on whole frames with a ``task == "detect"`` model on any backend."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamcount.detect.boxes import NMS_IOU, SCORE_THRESHOLD, Detections, decode
from streamcount.engine.base import Backend
from streamcount.errors import ModelError
from streamcount.models.card import ModelCard

if TYPE_CHECKING:
    from torch import nn

    from streamcount.engine.factory import BuildSettings
    from streamcount.models.lazy import LazyNet

    ModelArg = str | Path | tuple[nn.Module | LazyNet, ModelCard]

log = logging.getLogger(__name__)

#: the packaged person detector
DEFAULT_DETECTOR = "yolo_fastest_body"
#: ``backend="float"``: the first of these that loads. Measured on vtest frames at 416x416,
#: batch 4, on the shared 2-core machine (load average 6.5): OpenVINO fp32 7.8 ms per frame,
#: ONNX Runtime fp32 17 ms. int8 is not used: its parity check compares density sums.
FLOAT_BACKENDS = ("openvino", "onnx", "torch")


def create_float_backend(model: ModelArg, threads: int | None = None,
                         settings: BuildSettings | None = None) -> Backend:
    """The first backend of :data:`FLOAT_BACKENDS` that loads ``model`` (any task)."""
    return _create("float", model, threads, settings)


def _create(name: str, model: ModelArg, threads: int | None,
            settings: BuildSettings | None = None) -> Backend:
    from streamcount.engine.factory import create_backend
    from streamcount.errors import BackendError
    from streamcount.models.lazy import load_lazy
    from streamcount.models.weights import resolve_model

    if name != "float":
        return create_backend(name, model, threads=threads, settings=settings)
    loaded = model if isinstance(model, tuple) else load_lazy(resolve_model(str(model)))
    skipped: list[str] = []
    for candidate in FLOAT_BACKENDS:
        try:
            backend = create_backend(candidate, loaded, threads=threads, settings=settings)
        except BackendError as e:
            skipped.append(f"{candidate}: {e}")
            continue
        log.info("%s on %s%s", loaded[1].name, backend.name, f" (skipped {'; '.join(skipped)})"
                 if skipped else "")
        return backend
    raise BackendError("no backend for the detector: " + "; ".join(skipped))


class Detector:
    """Runs a detector model and post-processes its boxes.

    Frames are resized whole (no letterbox, bilinear, as Darknet and OpenCV's importer do) to
    the card's ``extra["input_size"]``; boxes come back in frame pixels.

    Args:
        model: model name/path, or a loaded ``(net, card)``; its card's task must be
            ``"detect"``.
        backend: ``"float"`` (default: the first of :data:`FLOAT_BACKENDS` that loads) or a
            backend name (``onnx``, ``openvino``, ``torch``...).
        threads: inference threads.
        score_threshold, iou: post-processing (defaults: the card's, else 0.4 and 0.45).
        input_size: (height, width) network input, multiples of 32 (default: the card's).
        settings: how the backend is built (e.g. ``throughput`` for offline counting).

    Example:
        >>> det = Detector()                                        # doctest: +SKIP
        >>> people = det.detect([frame])[0]; len(people)            # doctest: +SKIP
    """

    def __init__(self, model: ModelArg = DEFAULT_DETECTOR, *,
                 backend: str = "float", threads: int | None = None,
                 score_threshold: float | None = None, iou: float | None = None,
                 input_size: tuple[int, int] | None = None,
                 settings: BuildSettings | None = None) -> None:
        self.backend: Backend = _create(backend, model, threads, settings)
        card = self.backend.card
        if card.task != "detect":
            raise ModelError(f"model '{card.name}' is a {card.task} model, not a detector")
        extra = card.extra
        self.score_threshold = float(score_threshold if score_threshold is not None
                                     else extra.get("score_threshold", SCORE_THRESHOLD))
        self.iou = float(iou if iou is not None else extra.get("nms_iou", NMS_IOU))
        h, w = input_size or tuple(extra.get("input_size", (416, 416)))
        m = card.input_multiple
        if h % m or w % m:
            raise ModelError(f"detector input {h}x{w} must be a multiple of {m}")
        self.input_size = (int(h), int(w))

    @property
    def card(self) -> ModelCard:
        return self.backend.card

    def raw(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """The network's rows ``N x boxes x (5 + C)`` for uint8 BGR frames of any size."""
        h, w = self.input_size
        batch = np.stack([f if f.shape[:2] == (h, w) else
                          cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames])
        return self.backend.infer(batch)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """People in each uint8 BGR frame (boxes in that frame's pixels)."""
        out = self.raw(frames)
        return [decode(rows, f.shape[:2], score_threshold=self.score_threshold, iou=self.iou)
                for rows, f in zip(out, frames, strict=True)]
