"""The hybrid counting rule: detection where people are few and clearly visible, density
elsewhere, no person counted twice.

Density models trained on crowds overcount sparse full-body scenes (on ``vtest.avi`` the
default model sees about 1.7x the people, much of it spread thinly over the background), and
a small detector undercounts crowds (about 11 of 118 people on ShanghaiTech B). Neither
count alone decides, so both take part (:class:`HybridRule`):

1. **Frame gate.** The frame is *sparse* only if the density count is at most
   ``gate_per_detection x detections + gate_offset``: density does not claim many more people
   than the detector sees. In crowds it claims 4-100x more, and the whole frame is counted by
   density (``method="density"``).
2. **Regions.** A detection whose box holds more than ``box_density_max`` people of density
   is a group the detector merged; it is left to density. A sparse frame is split into a
   ``grid x grid`` lattice. The *residual* is the density outside the remaining detection
   boxes (what the detector does not explain). A region whose
   residual is at most ``residual_max`` people is counted by detection: the detections whose
   foot (or head) point lies in it, one each; its residual is dropped as the density model's
   false positives. Any other region is counted by density, without the density under the
   boxes of people already counted by detection.
3. The result is a *count map* at density resolution (a detection adds 1 at its point) so
   region polygons integrate it exactly like a density map, and its ``method`` is
   ``detect`` (every region by detection), ``density`` or ``hybrid`` (both).

The thresholds were chosen by a grid search on the 32 hand-counted ``vtest.avi`` frames of
``tests/fixtures/vtest_hand_counts.csv`` and 60 part B + 30 part A ShanghaiTech *train* images
(smallest part B regression among the settings with a ``vtest`` MAE <= 0.8; see README,
"Counting methods"); they are parameters, not constants of nature.

Example:
    >>> import numpy as np
    >>> from streamcount.detect.boxes import Detections
    >>> density = np.full((72, 96), 6.0 / (72 * 96), np.float32)  # 6 "people" of haze
    >>> people = Detections(np.array([[100, 100, 140, 200], [400, 300, 440, 420]], np.float32),
    ...                     np.array([0.9, 0.8], np.float32))
    >>> r = hybrid_count(density, people, (576, 768))
    >>> r.method, round(r.count, 2)
    ('detect', 2.0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from streamcount.detect.boxes import Detections
from streamcount.engine.preprocess import DENSITY_STRIDE, input_coverage

log = logging.getLogger(__name__)

METHODS = ("detect", "density", "hybrid")


@dataclass(frozen=True)
class HybridRule:
    """Parameters of :func:`hybrid_count` (see the module docstring)."""

    gate_per_detection: float = 2.0
    gate_offset: float = 5.0
    grid: int = 6
    residual_max: float = 2.0
    anchor: str = "foot"  # the point a detection is counted at: "foot" or "head"
    #: a detection whose box holds more density than this is a group the detector merged:
    #: it is not counted by detection and its box does not mask the residual
    box_density_max: float = 3.0

    def __post_init__(self) -> None:
        if self.grid < 1:
            raise ValueError(f"grid must be >= 1, got {self.grid}")
        if self.anchor not in ("foot", "head"):
            raise ValueError(f"anchor must be 'foot' or 'head', got {self.anchor!r}")


@dataclass(frozen=True)
class HybridCount:
    """How one frame was counted.

    Attributes:
        count_map: float32 ``h x w`` at density resolution; its sum is the count and a region's
            count is its integral, as for a density map.
        method: ``detect``, ``density`` or ``hybrid``.
        detect_regions: bool ``grid x grid``, True where a region was counted by detection
            (all False when the frame gate chose density).
        counted: the detections counted (one person each).
    """

    count_map: np.ndarray
    method: str
    detect_regions: np.ndarray
    counted: Detections

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.count_map.ndim != 2:
            raise ValueError(f"count_map must be 2-D, got shape {self.count_map.shape}")

    @property
    def count(self) -> float:
        return float(self.count_map.sum())


def sparse_frame(density_count: float, detections: int, rule: HybridRule | None = None) -> bool:
    """The frame gate: whether the detector explains the density (density count at most
    ``gate_per_detection x detections + gate_offset``)."""
    rule = rule or HybridRule()
    return density_count <= rule.gate_per_detection * detections + rule.gate_offset


def _cells(points: np.ndarray, frame_size: tuple[int, int],
           shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Density-map (row, col) of frame points, clipped to the map."""
    sy, sx = _cells_per_pixel(frame_size, shape)
    h, w = shape
    rows = np.clip((points[:, 1] * sy).astype(np.int64), 0, h - 1)
    cols = np.clip((points[:, 0] * sx).astype(np.int64), 0, w - 1)
    return rows, cols


def _cells_per_pixel(frame_size: tuple[int, int], shape: tuple[int, int],
                     stride: int = DENSITY_STRIDE) -> tuple[float, float]:
    """Density cells per frame pixel, (vertical, horizontal): the map covers the top-left
    :func:`~streamcount.engine.preprocess.input_coverage` of the frame."""
    (fh, fw), (h, w) = frame_size, shape
    cy, cx = input_coverage(frame_size, (h * stride, w * stride))
    return h / (fh * cy), w / (fw * cx)


def _box_masks(boxes: np.ndarray, frame_size: tuple[int, int],
               shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    """Density-map slices covered by each box (outward rounding)."""
    h, w = shape
    sy, sx = _cells_per_pixel(frame_size, shape)
    out = []
    for x1, y1, x2, y2 in boxes:
        r0, r1 = int(np.floor(y1 * sy)), int(np.ceil(y2 * sy))
        c0, c1 = int(np.floor(x1 * sx)), int(np.ceil(x2 * sx))
        out.append((slice(max(r0, 0), min(r1, h)), slice(max(c0, 0), min(c1, w))))
    return out


def point_map(detections: Detections, frame_size: tuple[int, int], shape: tuple[int, int],
              anchor: str = "foot") -> np.ndarray:
    """A count map with 1 at each detection's point (``method="detect"``)."""
    m = np.zeros(shape, np.float32)
    if len(detections):
        rows, cols = _cells(detections.points(anchor), frame_size, shape)
        np.add.at(m, (rows, cols), 1.0)
    return m


def hybrid_count(density: np.ndarray, detections: Detections, frame_size: tuple[int, int],
                 rule: HybridRule | None = None) -> HybridCount:
    """Count one frame from its density map and its detections (see the module docstring).

    Args:
        density: float ``h x w`` density map of the frame (the model input covers the frame).
        detections: the frame's detections, boxes in frame pixels.
        frame_size: (height, width) of the frame the boxes refer to.
        rule: thresholds (default :class:`HybridRule`).
    """
    rule = rule or HybridRule()
    density = np.asarray(density, dtype=np.float32)
    if density.ndim != 2:
        raise ValueError(f"density must be 2-D, got shape {density.shape}")
    h, w = density.shape
    g = rule.grid
    n = len(detections)
    none = np.zeros((g, g), bool)
    if not sparse_frame(float(density.sum()), n, rule):
        return HybridCount(density, "density", none, Detections.empty())

    boxes = _box_masks(detections.boxes, frame_size, (h, w))
    if n:
        clear = np.array([density[sl].sum() <= rule.box_density_max for sl in boxes])
        detections = detections.select(clear)
        boxes = [sl for sl, c in zip(boxes, clear, strict=True) if c]
        n = len(detections)
    covered = np.zeros((h, w), bool)
    for sl in boxes:
        covered[sl] = True
    residual = np.where(covered, 0.0, density)
    ys = np.linspace(0, h, g + 1).round().astype(np.int64)
    xs = np.linspace(0, w, g + 1).round().astype(np.int64)
    region_residual = np.array([[residual[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].sum()
                                 for j in range(g)] for i in range(g)])
    detect = region_residual <= rule.residual_max

    # the region of each detection: where its point falls
    rows, cols = _cells(detections.points(rule.anchor), frame_size, (h, w)) if n else (
        np.zeros(0, np.int64), np.zeros(0, np.int64))
    reg_r = np.clip(np.searchsorted(ys, rows, side="right") - 1, 0, g - 1)
    reg_c = np.clip(np.searchsorted(xs, cols, side="right") - 1, 0, g - 1)
    keep = detect[reg_r, reg_c] if n else np.zeros(0, bool)
    counted = detections.select(keep)

    # density regions: their density, minus what lies under people counted by detection
    in_detect = np.repeat(np.repeat(detect, np.diff(ys), 0), np.diff(xs), 1)
    taken = np.zeros((h, w), bool)
    for k in np.flatnonzero(keep):
        taken[boxes[k]] = True
    count_map = np.where(in_detect | taken, 0.0, density).astype(np.float32)
    if len(counted):
        np.add.at(count_map, (rows[keep], cols[keep]), 1.0)
    method = "detect" if detect.all() else "density" if not detect.any() else "hybrid"
    log.debug("hybrid: density %.1f, %d detections, %d of %d regions by detection -> %s %.1f",
              density.sum(), n, int(detect.sum()), g * g, method, count_map.sum())
    return HybridCount(count_map, method, detect, counted)


def count_map_for(method: str, density: np.ndarray, detections: Detections,
                  frame_size: tuple[int, int], rule: HybridRule | None = None) -> HybridCount:
    """The count of one frame by ``method``: ``auto`` (the hybrid rule), ``density`` or
    ``detect`` (every person by detection, at density resolution)."""
    density = np.asarray(density, dtype=np.float32)
    g = (rule or HybridRule()).grid
    if method == "auto":
        return hybrid_count(density, detections, frame_size, rule)
    if method == "density":
        return HybridCount(density, "density", np.zeros((g, g), bool), Detections.empty())
    if method == "detect":
        anchor = (rule or HybridRule()).anchor
        return HybridCount(point_map(detections, frame_size, density.shape, anchor), "detect",
                           np.ones((g, g), bool), detections)
    raise ValueError(f"unknown counting method {method!r} (auto, density, detect)")
