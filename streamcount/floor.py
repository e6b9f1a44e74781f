"""Crowd density in people per square metre: floor areas from a ground-plane homography, and
level-of-service (LoS) letters.

A region's real floor area comes either from its ``area_m2`` or from a ground calibration:
four points on the floor in relative image coordinates with their positions in metres. The
homography ``H`` (image -> floor) maps each polygon vertex onto the floor plane; straight edges
stay straight under a homography, so the floor area is the shoelace area of the mapped
vertices. ``density = smoothed count / area``.

LoS tables (people/m², upper bounds of A..E; F above the last), converted from the published
area-per-person figures:

- ``walkway`` (default): J. J. Fruin, *Pedestrian Planning and Design* (1971), walkway level of
  service: A <= 0.31, B <= 0.43, C <= 0.72, D <= 1.08, E <= 2.15, F > 2.15 (35/25/15/10/5 ft²
  per person).
- ``queue``: the Highway Capacity Manual's queuing (standing) level of service, after Fruin:
  A < 0.83, B < 1.1, C < 1.7, D < 3.3, E < 5 ("physical contact unavoidable"), F >= 5
  ("potential for panic").

Example:
    >>> H = homography([(0, 0), (1, 0), (1, 1), (0, 1)], [(0, 0), (10, 0), (10, 4), (0, 4)])
    >>> round(ground_area(H, [(0, 0), (0.5, 0), (0.5, 1), (0, 1)]), 6)
    20.0
    >>> los_letter(2.5, "walkway"), los_letter(2.5, "queue")
    ('F', 'D')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]

#: upper bounds (people/m²) of letters A..E; above the last bound is F
LOS_TABLES: dict[str, tuple[float, ...]] = {
    "walkway": (0.31, 0.43, 0.72, 1.08, 2.15),
    "queue": (0.83, 1.1, 1.7, 3.3, 5.0),
}
LETTERS = "ABCDEF"
#: the largest floor area accepted for one camera region (1 km²): a typo guard
MAX_AREA_M2 = 1_000_000.0


class CalibrationError(ValueError):
    """Ground points that define no usable homography, or a polygon it cannot map."""


def los_letter(density: float, table: str = "walkway") -> str:
    """The LoS letter of a density (people/m²) in ``table`` (``walkway`` or ``queue``)."""
    bounds = LOS_TABLES[table]
    for letter, bound in zip(LETTERS, bounds, strict=False):
        if density < bound or (table == "walkway" and density == bound):
            return letter
    return LETTERS[len(bounds)]


def homography(image: Sequence[Point], ground: Sequence[Point]) -> np.ndarray:
    """The 3x3 homography mapping four image points onto their four floor points (metres).

    Raises:
        CalibrationError: not four points each, three of them on one line (in either
            plane), or a singular solution.
    """
    if len(image) != 4 or len(ground) != 4:
        raise CalibrationError(f"need exactly 4 image and 4 ground points, got {len(image)} "
                               f"and {len(ground)}")
    for name, pts in (("image", image), ("ground", ground)):
        for i in range(4):
            a, b, c = (pts[j] for j in range(4) if j != i)
            if abs(_cross(a, b, c)) < 1e-9 * max(1.0, _span(pts) ** 2):
                raise CalibrationError(f"three of the {name} points lie on one line")
    rows, rhs = [], []
    for (x, y), (u, v) in zip(image, ground, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    try:
        h = np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs, np.float64))
    except np.linalg.LinAlgError:
        raise CalibrationError("the ground points give a singular homography") from None
    return np.append(h, 1.0).reshape(3, 3)


def ground_area(H: np.ndarray, polygon: Sequence[Point]) -> float:
    """Floor area (m²) of an image polygon (relative coordinates) under homography ``H``.

    Raises:
        CalibrationError: the polygon reaches the horizon of the calibrated plane (its
            vertices would map to infinity or behind the camera).
    """
    pts = np.asarray(polygon, dtype=np.float64)
    hom = np.c_[pts, np.ones(len(pts))] @ H.T
    w = hom[:, 2]
    if not (np.all(w > 1e-9) or np.all(w < -1e-9)):
        raise CalibrationError("the polygon reaches the horizon of the ground calibration "
                               "(points above the floor plane's vanishing line)")
    mapped = hom[:, :2] / w[:, None]
    x, y = mapped[:, 0], mapped[:, 1]
    return float(abs(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))))


def check_area(area: float) -> str | None:
    """Why ``area`` (m²) is not a possible floor area, or None."""
    if not math.isfinite(area):
        return f"area must be a finite number of square metres, got {area}"
    if area <= 0:
        return f"area must be positive, got {area:g} m²"
    if area > MAX_AREA_M2:
        return f"area {area:g} m² is larger than {MAX_AREA_M2:g} m² (1 km²); check the units"
    return None


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _span(pts: Sequence[Point]) -> float:
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return max(max(xs) - min(xs), max(ys) - min(ys))
