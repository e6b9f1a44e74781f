"""Regions of interest: validated polygons and exact fractional-area masks for density maps.

A region's count is ``(density * mask).sum()``. Each density cell contributes by the exact
fraction of its area that lies inside the polygon (the polygon is clipped against the cell
rectangle), so a polygon edge that cuts a cell in half takes half of that cell's density, and
the counts of regions that tile the frame add up to the whole-frame count ``all``.

Polygons are stored in relative coordinates (0-1 of the frame's width and height), so one
regions file fits every input size; pixel coordinates are accepted with ``reference_size``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from streamcount.config.regions import RegionSpec, RegionsFile
from streamcount.engine.preprocess import input_coverage
from streamcount.errors import RegionError

log = logging.getLogger(__name__)

#: the whole-frame pseudo-region every counter reports; not allowed as a region name
ALL = "all"
#: how far (relative to the frame) a point may lie outside the frame; it is clamped onto it
EDGE_TOLERANCE = 0.01

Point = tuple[float, float]


@dataclass(frozen=True)
class Region:
    """A named polygon in relative frame coordinates (x right, y down, both 0-1)."""

    name: str
    polygon: tuple[Point, ...]

    def __post_init__(self) -> None:
        if len(self.polygon) < 3:
            raise ValueError(f"region {self.name!r} needs at least 3 points")


# ---------------------------------------------------------------------------------------------
# validation


def regions_from_specs(specs: Sequence[RegionSpec], source: str) -> list[Region]:
    """Validate region specs and convert them to relative-coordinate :class:`Region` objects.

    Checks: at least 3 distinct points, finite, inside the frame (points up to
    ``EDGE_TOLERANCE`` outside are clamped onto it), pixel coordinates converted with
    ``reference_size`` (width, height), relative coordinates within 0-1 otherwise, non-zero
    area, not self-intersecting, unique names, and none called ``all``.

    Raises:
        RegionError: naming ``source`` and the offending region.
    """
    regions: list[Region] = []
    seen: set[str] = set()
    for spec in specs:
        where = f"{source}: region '{spec.name}'"
        if spec.name == ALL:
            raise RegionError(f"{where}: the name '{ALL}' is reserved for the whole frame")
        if spec.name in seen:
            raise RegionError(f"{where}: duplicate region name")
        seen.add(spec.name)
        poly = _to_relative(spec, where)
        _check_simple(poly, where)
        regions.append(Region(spec.name, tuple(poly)))
    return regions


def _to_relative(spec: RegionSpec, where: str) -> list[Point]:
    pts = [(float(x), float(y)) for x, y in spec.polygon]
    if not all(math.isfinite(v) for p in pts for v in p):
        raise RegionError(f"{where}: polygon has a non-finite coordinate")
    if spec.reference_size is not None:
        rw, rh = spec.reference_size
        if rw <= 0 or rh <= 0:
            raise RegionError(f"{where}: reference_size must be positive (width, height), "
                              f"got {spec.reference_size}")
        pts = [(x / rw, y / rh) for x, y in pts]
        unit = f"the {rw}x{rh} reference frame"
    else:
        unit = "the frame (relative coordinates 0-1; give reference_size for pixels)"
    lo, hi = -EDGE_TOLERANCE, 1.0 + EDGE_TOLERANCE
    for i, (x, y) in enumerate(pts):
        if not (lo <= x <= hi and lo <= y <= hi):
            orig = spec.polygon[i]
            raise RegionError(f"{where}: point {i} {tuple(orig)} lies outside {unit}")
    pts = [(min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)) for x, y in pts]
    # drop repeated points (including an explicit closing point)
    out: list[Point] = []
    for p in pts:
        if not out or p != out[-1]:
            out.append(p)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    if len(out) < 3:
        raise RegionError(f"{where}: polygon needs at least 3 distinct points, got {len(out)}")
    return out


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return (min(a[0], b[0]) <= p[0] <= max(a[0], b[0])
            and min(a[1], b[1]) <= p[1] <= max(a[1], b[1]))


def _segments_touch(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Whether closed segments ab and cd share at least one point."""
    d1, d2 = _cross(c, d, a), _cross(c, d, b)
    d3, d4 = _cross(a, b, c), _cross(a, b, d)
    if ((d1 > 0) != (d2 > 0) and d1 != 0 and d2 != 0
            and (d3 > 0) != (d4 > 0) and d3 != 0 and d4 != 0):
        return True
    return ((d1 == 0 and _on_segment(a, c, d)) or (d2 == 0 and _on_segment(b, c, d))
            or (d3 == 0 and _on_segment(c, a, b)) or (d4 == 0 and _on_segment(d, a, b)))


def _check_simple(poly: Sequence[Point], where: str) -> None:
    n = len(poly)
    if all(_cross(poly[0], poly[1], p) == 0 for p in poly[2:]):
        raise RegionError(f"{where}: polygon has zero area (all points on one line)")
    edges = [(poly[i], poly[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        a, b = edges[i]
        # adjacent edge folding back onto this one
        c = edges[(i + 1) % n][1]
        if _cross(a, b, c) == 0 and ((c[0] - b[0]) * (a[0] - b[0]) + (c[1] - b[1]) * (a[1] - b[1])) > 0:
            raise RegionError(f"{where}: polygon is self-intersecting "
                              f"(edges {i} and {(i + 1) % n} overlap)")
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing vertex
            if _segments_touch(a, b, *edges[j]):
                raise RegionError(f"{where}: polygon is self-intersecting "
                                  f"(edges {i} and {j} cross)")
    if abs(polygon_area(poly)) < 1e-12:
        raise RegionError(f"{where}: polygon has zero area")


# ---------------------------------------------------------------------------------------------
# loading


def load_regions(path: str | Path) -> list[Region]:
    """Read a regions file (YAML, or JSON by its ``.json`` suffix) of the
    :class:`~streamcount.config.regions.RegionsFile` shape and validate its polygons.

    Raises:
        RegionError: one line naming the file, the key path (and YAML line) and the problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegionError(f"{path}: regions file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RegionError(f"{path}: cannot read regions file ({e})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise RegionError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RegionError(f"{path}{line}: invalid YAML ({problem})") from None
    if data is None:
        data = {}
    try:
        parsed = RegionsFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        line = _line_of(text, err["loc"])
        where = f"{path}:{line}" if line else str(path)
        raise RegionError(f"{where}: {loc}: {err['msg']}") from None
    return regions_from_specs(parsed.regions, source=str(path))


def _line_of(text: str, loc: Iterable[Any]) -> int | None:
    """1-based line of the YAML/JSON node at key path ``loc`` (the deepest one that exists)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if getattr(k, "value", None) == str(key):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        node = nxt
    if node is not None:
        line = node.start_mark.line + 1
    return line


# ---------------------------------------------------------------------------------------------
# masks


def polygon_area(poly: Sequence[Point]) -> float:
    """Signed area (shoelace); positive for counter-clockwise in x-right, y-up axes."""
    n = len(poly)
    s = 0.0
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        s += x0 * y1 - x1 * y0
    return 0.5 * s


def _clip(poly: list[Point], axis: int, value: float, keep_greater: bool) -> list[Point]:
    """Sutherland-Hodgman against one axis-aligned half-plane. Exact in area for any simple
    subject polygon because the clip region is convex."""
    out: list[Point] = []
    n = len(poly)
    if n == 0:
        return out
    prev = poly[-1]
    prev_in = (prev[axis] >= value) if keep_greater else (prev[axis] <= value)
    for cur in poly:
        cur_in = (cur[axis] >= value) if keep_greater else (cur[axis] <= value)
        if cur_in != prev_in:
            t = (value - prev[axis]) / (cur[axis] - prev[axis])
            other = 1 - axis
            q = [0.0, 0.0]
            q[axis] = value
            q[other] = prev[other] + t * (cur[other] - prev[other])
            out.append((q[0], q[1]))
        if cur_in:
            out.append(cur)
        prev, prev_in = cur, cur_in
    return out


def _boundary_cells(pts: np.ndarray, h: int, w: int) -> dict[int, set[int]]:
    """Cells (column -> rows) whose closed rectangle an edge of the polygon touches (a
    superset is fine: those cells are clipped exactly)."""
    cells: dict[int, set[int]] = {}
    n = len(pts)
    for i in range(n):
        x0, y0 = pts[i]
        x1, y1 = pts[(i + 1) % n]
        lo_x, hi_x = min(x0, x1), max(x0, x1)
        c_lo = max(0, math.ceil(lo_x) - 1)
        c_hi = min(w - 1, math.floor(hi_x))
        for c in range(c_lo, c_hi + 1):
            a, b = max(lo_x, c), min(hi_x, c + 1)
            if a > b:
                continue
            if x1 == x0:
                ya, yb = y0, y1
            else:
                ya = y0 + (a - x0) / (x1 - x0) * (y1 - y0)
                yb = y0 + (b - x0) / (x1 - x0) * (y1 - y0)
            lo_y, hi_y = min(ya, yb), max(ya, yb)
            r_lo = max(0, math.ceil(lo_y) - 1)
            r_hi = min(h - 1, math.floor(hi_y))
            if r_lo <= r_hi:
                cells.setdefault(c, set()).update(range(r_lo, r_hi + 1))
    return cells


def _inside(pts: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon for arrays of points (not on the boundary)."""
    inside = np.zeros(x.shape, dtype=bool)
    n = len(pts)
    for i in range(n):
        x0, y0 = pts[i]
        x1, y1 = pts[(i + 1) % n]
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < xi)
    return inside


def region_mask(polygon: Sequence[Point], height: int, width: int,
                coverage: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Fractional-area mask (float32, ``height x width``) of a relative-coordinate polygon on a
    grid of cells covering the top-left ``coverage`` = (vertical, horizontal) fraction of the
    frame (see :func:`streamcount.engine.preprocess.input_coverage`; the whole frame by
    default): each value is the exact fraction of the cell inside."""
    cy, cx = coverage
    if not (0 < cy <= 1 and 0 < cx <= 1):
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    pts = np.asarray(polygon, dtype=np.float64) * np.array([width / cx, height / cy],
                                                           dtype=np.float64)
    if polygon_area([tuple(p) for p in pts]) < 0:
        pts = pts[::-1]
    # cells the boundary does not touch are entirely inside or outside: test their centres
    yy, xx = np.mgrid[0:height, 0:width]
    mask = _inside(pts, xx + 0.5, yy + 0.5).astype(np.float64)
    poly = [(float(x), float(y)) for x, y in pts]
    for c, rows in _boundary_cells(pts, height, width).items():
        strip = _clip(_clip(poly, 0, float(c), True), 0, float(c + 1), False)
        for r in rows:
            piece = _clip(_clip(strip, 1, float(r), True), 1, float(r + 1), False)
            mask[r, c] = abs(polygon_area(piece)) if len(piece) >= 3 else 0.0
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


class RegionCounter:
    """Per-region counts of density maps for one input size.

    Masks (``masks[name]``, float32 at density resolution) are computed once at construction;
    a region's count is ``(density * mask).sum()`` and ``all`` is the whole-frame sum.
    ``frame_hw`` is the size of the frames the inputs were prepared from: the input covers the
    top-left :func:`~streamcount.engine.preprocess.input_coverage` of them (None: all of it).
    """

    def __init__(self, regions: Sequence[Region], input_hw: tuple[int, int], stride: int,
                 frame_hw: tuple[int, int] | None = None) -> None:
        self.regions = tuple(regions)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.stride = int(stride)
        self.coverage = (1.0, 1.0) if frame_hw is None else input_coverage(frame_hw, self.input_hw)
        self.density_hw = (self.input_hw[0] // self.stride, self.input_hw[1] // self.stride)
        self.masks: dict[str, np.ndarray] = {}
        self._matrix = np.zeros((0, 0))
        self._build(self.density_hw)

    def _build(self, hw: tuple[int, int]) -> None:
        self.density_hw = hw
        self.masks = {r.name: region_mask(r.polygon, *hw, coverage=self.coverage)
                      for r in self.regions}
        n = hw[0] * hw[1]
        self._matrix = (np.stack([m.reshape(n) for m in self.masks.values()]).astype(np.float64)
                        if self.masks else np.zeros((0, n)))
        log.debug("region masks for density %dx%d: %s", hw[1], hw[0],
                  {k: round(float(m.sum()), 2) for k, m in self.masks.items()})

    @property
    def names(self) -> tuple[str, ...]:
        """Region names in order, then ``all``."""
        return (*[r.name for r in self.regions], ALL)

    def count(self, density: np.ndarray) -> dict[str, float]:
        """Counts of one density map (``h x w``): each region, then ``all``."""
        if density.ndim != 2:
            raise ValueError(f"density must be 2-D, got shape {density.shape}")
        if density.shape != self.density_hw:
            log.warning("density is %s, masks were %s: rebuilding masks", density.shape,
                        self.density_hw)
            self._build((int(density.shape[0]), int(density.shape[1])))
        flat = density.reshape(-1).astype(np.float64)
        values = self._matrix @ flat
        out = {r.name: float(v) for r, v in zip(self.regions, values, strict=True)}
        out[ALL] = float(flat.sum())
        return out
