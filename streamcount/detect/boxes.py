"""Detections as a frozen message, and the numpy post-processing of a YOLO head's output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: default minimum score (objectness x class probability) of a kept detection
SCORE_THRESHOLD = 0.4
#: default IoU above which the lower-scoring of two boxes is suppressed
NMS_IOU = 0.45


@dataclass(frozen=True)
class Detections:
    """People found in one frame.

    Attributes:
        boxes: ``K x 4`` float32 ``x1, y1, x2, y2`` in frame pixels.
        scores: ``K`` float32 in 0-1, highest first.
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be K x 4, got shape {self.boxes.shape}")
        if self.scores.shape != (self.boxes.shape[0],):
            raise ValueError(f"scores must have shape ({self.boxes.shape[0]},), "
                             f"got {self.scores.shape}")

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def heights(self) -> np.ndarray:
        """Box heights in pixels."""
        return self.boxes[:, 3] - self.boxes[:, 1]

    def points(self, anchor: str = "foot") -> np.ndarray:
        """``K x 2`` (x, y) per person: ``"foot"`` (bottom centre), ``"head"`` (top centre,
        a tenth of the height down) or ``"centre"``."""
        x = (self.boxes[:, 0] + self.boxes[:, 2]) / 2
        if anchor == "foot":
            y = self.boxes[:, 3]
        elif anchor == "head":
            y = self.boxes[:, 1] + 0.1 * self.heights
        elif anchor == "centre":
            y = (self.boxes[:, 1] + self.boxes[:, 3]) / 2
        else:
            raise ValueError(f"unknown anchor {anchor!r} (foot, head, centre)")
        return np.stack([x, y], 1).astype(np.float32)

    def select(self, keep: np.ndarray) -> Detections:
        """The detections where boolean or index array ``keep`` selects."""
        return Detections(self.boxes[keep], self.scores[keep])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, highest score first."""
    order = np.argsort(-scores, kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0,
                                                                   None)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        union = area[i] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def decode(rows: np.ndarray, frame_size: tuple[int, int], *,
           score_threshold: float = SCORE_THRESHOLD, iou: float = NMS_IOU,
           class_index: int = 0) -> Detections:
    """Detections of one frame from a YOLO head's ``boxes x (5 + C)`` rows.

    Args:
        rows: ``cx, cy, w, h`` as fractions of the network input (the whole frame resized, so
            also fractions of the frame), objectness, class scores.
        frame_size: (height, width) of the original frame, for pixel boxes.
        score_threshold: minimum class score (objectness x class probability).
        iou: NMS overlap threshold.
        class_index: the class counted (0: ``body``).
    """
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise ValueError(f"expected boxes x (5 + C) rows, got shape {rows.shape}")
    scores = rows[:, 5 + class_index]
    sel = scores >= score_threshold
    if not sel.any():
        return Detections.empty()
    r, scores = rows[sel], scores[sel]
    h, w = frame_size
    boxes = np.stack([(r[:, 0] - r[:, 2] / 2) * w, (r[:, 1] - r[:, 3] / 2) * h,
                      (r[:, 0] + r[:, 2] / 2) * w, (r[:, 1] + r[:, 3] / 2) * h], 1)
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    keep = nms(boxes, scores, iou)
    return Detections(boxes[keep], scores[keep].astype(np.float32))
