"""Region geometry: validation, exact fractional-area masks, region counts, regions files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from streamcount.config.regions import RegionSpec
from streamcount.errors import RegionError
from streamcount.regions import (
    ALL,
    Region,
    RegionCounter,
    load_regions,
    polygon_area,
    region_mask,
    regions_from_specs,
)


def spec(name: str, polygon: list[tuple[float, float]], ref: tuple[int, int] | None = None) -> RegionSpec:
    return RegionSpec(name=name, polygon=polygon, reference_size=ref)


# --- masks: hand-computed cases -------------------------------------------------------------

def test_triangle_covers_half_of_one_cell() -> None:
    assert region_mask([(0, 0), (1, 0), (0, 1)], 1, 1)[0, 0] == pytest.approx(0.5, abs=1e-12)


def test_diagonal_halves_the_diagonal_cells() -> None:
    # y <= x (image axes): cells right of the diagonal full, diagonal cells half, others empty
    m = region_mask([(0, 0), (1, 0), (1, 1)], 3, 3)
    expected = np.array([[0.5, 1, 1], [0, 0.5, 1], [0, 0, 0.5]])
    np.testing.assert_allclose(m, expected, atol=1e-7)


def test_edges_between_grid_lines_give_partial_cells() -> None:
    # x from 0.1 to 0.6 on 4 columns of width 0.25: 0.6, 1, 0.4, 0 of each column; y 0.5-1 on 2 rows
    m = region_mask([(0.1, 0.5), (0.6, 0.5), (0.6, 1.0), (0.1, 1.0)], 2, 4)
    expected = np.array([[0, 0, 0, 0], [0.6, 1.0, 0.4, 0.0]])
    np.testing.assert_allclose(m, expected, atol=1e-6)


def test_non_convex_l_shape() -> None:
    # an L on a 4x4 grid: left column full height, bottom row full width, corner notch cut
    # diagonally through cell (row 0, col 1)
    L = [(0, 0), (0.5, 0), (0.25, 0.25), (0.25, 0.75), (1, 0.75), (1, 1), (0, 1)]
    m = region_mask(L, 4, 4)
    expected = np.array([
        [1, 0.5, 0, 0],
        [1, 0, 0, 0],
        [1, 0, 0, 0],
        [1, 1, 1, 1],
    ], dtype=float)
    np.testing.assert_allclose(m, expected, atol=1e-6)


def _star(n: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.1, 0.45, n)
    return [(0.5 + r * math.cos(a), 0.5 + r * math.sin(a)) for a, r in zip(angles, radii)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_total_equals_polygon_area_exactly(seed: int) -> None:
    poly = _star(17, seed)  # star-shaped, non-convex, simple
    h, w = 37, 53
    m = region_mask(poly, h, w)
    assert m.sum() / (h * w) == pytest.approx(abs(polygon_area(poly)), rel=1e-6)
    assert m.min() >= 0 and m.max() <= 1


def test_mask_matches_fine_supersampling() -> None:
    poly = _star(23, 7)
    h, w = 12, 16
    m = region_mask(poly, h, w)
    k = 64  # 64x64 samples per cell, independent point-in-polygon test
    ys, xs = np.mgrid[0:h * k, 0:w * k]
    pts = np.stack([(xs.ravel() + 0.5) / (w * k), (ys.ravel() + 0.5) / (h * k)], axis=1)
    inside = MplPath(np.array(poly)).contains_points(pts).reshape(h * k, w * k)
    approx = inside.reshape(h, k, w, k).mean(axis=(1, 3))
    assert np.abs(m - approx).max() < 0.02  # the sampling error, not the mask's
    assert abs(m.sum() - approx.sum()) / m.sum() < 1e-3


def test_orientation_does_not_matter() -> None:
    poly = _star(11, 3)
    np.testing.assert_allclose(region_mask(poly, 9, 13), region_mask(poly[::-1], 9, 13), atol=1e-7)


# --- counting -------------------------------------------------------------------------------

def test_full_frame_region_equals_all() -> None:
    regions = regions_from_specs([spec("everything", [(0, 0), (1, 0), (1, 1), (0, 1)])], "t")
    counter = RegionCounter(regions, (576, 768), 8)
    density = np.random.default_rng(0).random((72, 96), dtype=np.float32) * 0.01
    counts = counter.count(density)
    assert set(counts) == {"everything", ALL}
    assert counts["everything"] == pytest.approx(counts[ALL], rel=1e-9)
    assert counts[ALL] == pytest.approx(float(density.astype(np.float64).sum()), rel=1e-9)


def test_regions_tiling_the_frame_add_up_to_all() -> None:
    # split off the cell grid at x=0.37 along a slanted line
    left = [(0, 0), (0.37, 0), (0.52, 1), (0, 1)]
    right = [(0.37, 0), (1, 0), (1, 1), (0.52, 1)]
    regions = regions_from_specs([spec("left", left), spec("right", right)], "t")
    counter = RegionCounter(regions, (360, 640), 8)
    density = np.random.default_rng(1).random((45, 80), dtype=np.float32)
    c = counter.count(density)
    assert c["left"] + c["right"] == pytest.approx(c[ALL], rel=1e-9)
    assert 0.3 < c["left"] / c[ALL] < 0.6
    np.testing.assert_allclose(counter.masks["left"] + counter.masks["right"], 1.0, atol=1e-6)


def test_count_of_uniform_density_is_area_times_density() -> None:
    poly = _star(9, 5)
    counter = RegionCounter([Region("star", tuple(poly))], (240, 320), 8)
    density = np.full((30, 40), 0.25, dtype=np.float32)
    expected = abs(polygon_area(poly)) * 30 * 40 * 0.25
    assert counter.count(density)["star"] == pytest.approx(expected, rel=1e-6)


def test_count_rebuilds_masks_for_another_density_size() -> None:
    counter = RegionCounter([Region("top", ((0, 0), (1, 0), (1, 0.5), (0, 0.5)))], (64, 64), 8)
    c = counter.count(np.ones((10, 6), dtype=np.float32))
    assert c["top"] == pytest.approx(30.0)
    assert counter.masks["top"].shape == (10, 6)


def test_count_rejects_non_2d_density() -> None:
    counter = RegionCounter([], (64, 64), 8)
    with pytest.raises(ValueError, match="2-D"):
        counter.count(np.ones((1, 8, 8), dtype=np.float32))


# --- validation -----------------------------------------------------------------------------

def test_pixel_and_relative_coordinates_are_equivalent() -> None:
    px = [(192, 108), (1500, 200), (1800, 1000), (400, 900)]
    rel = [(x / 1920, y / 1080) for x, y in px]
    a = regions_from_specs([spec("a", px, (1920, 1080))], "t")[0]
    b = regions_from_specs([spec("a", rel)], "t")[0]
    np.testing.assert_allclose(np.array(a.polygon), np.array(b.polygon), atol=1e-12)
    np.testing.assert_allclose(region_mask(a.polygon, 67, 120), region_mask(b.polygon, 67, 120),
                               atol=1e-7)


def test_points_slightly_outside_are_clamped() -> None:
    r = regions_from_specs([spec("edge", [(-0.005, 0), (1.004, 0), (1, 1), (0, 1.0)])], "t")[0]
    assert r.polygon[0] == (0.0, 0.0) and r.polygon[1] == (1.0, 0.0)


def test_closing_point_is_accepted() -> None:
    r = regions_from_specs([spec("c", [(0, 0), (1, 0), (1, 1), (0, 0)])], "t")[0]
    assert len(r.polygon) == 3


@pytest.mark.parametrize(("polygon", "ref", "match"), [
    ([(0, 0), (1, 1)], None, "at least 3 distinct points"),
    ([(0, 0), (0, 0), (1, 1), (1, 1)], None, "at least 3 distinct points"),
    ([(0, 0), (1, 1), (1, 0), (0, 1)], None, "self-intersecting"),  # bow-tie
    ([(0.1, 0.1), (0.9, 0.1), (0.5, 0.1), (0.5, 0.8)], None, "self-intersecting"),  # folds back
    ([(0, 0), (0.5, 0.5), (1, 1)], None, "zero area"),
    ([(0, 0), (1.5, 0), (1, 1)], None, "outside the frame"),
    ([(10, 10), (300, 10), (300, 200)], None, "give reference_size"),
    ([(10, 10), (2000, 10), (300, 200)], (1920, 1080), "outside the 1920x1080 reference frame"),
    ([(0, 0), (1, 0), (1, 1)], (0, 1080), "reference_size must be positive"),
    ([(0, 0), (float("nan"), 0), (1, 1)], None, "non-finite"),
])
def test_invalid_polygons_are_named(polygon, ref, match) -> None:
    with pytest.raises(RegionError, match=match) as e:
        regions_from_specs([spec("ok", [(0, 0), (1, 0), (0, 1)]), spec("door", polygon, ref)],
                           "cams.yaml")
    assert str(e.value).startswith("cams.yaml: region 'door': ")


def test_self_touching_polygon_is_rejected() -> None:
    # a vertex touching a non-adjacent edge (two lobes joined at one point)
    poly = [(0, 0), (0.5, 0), (0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1), (0.5, 0.5), (0, 0.5)]
    with pytest.raises(RegionError, match="self-intersecting"):
        regions_from_specs([spec("lobes", poly)], "t")


def test_duplicate_and_reserved_names() -> None:
    tri = [(0, 0), (1, 0), (0, 1)]
    with pytest.raises(RegionError, match="f.yaml: region 'a': duplicate region name"):
        regions_from_specs([spec("a", tri), spec("a", tri)], "f.yaml")
    with pytest.raises(RegionError, match="'all' is reserved"):
        regions_from_specs([spec("all", tri)], "f.yaml")


# --- files ----------------------------------------------------------------------------------

def test_load_yaml_and_json(tmp_path: Path) -> None:
    y = tmp_path / "regions.yaml"
    y.write_text("regions:\n"
                 "  - name: entrance\n"
                 "    polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n"
                 "  - name: stage\n"
                 "    reference_size: [768, 576]\n"
                 "    polygon: [[384, 0], [768, 0], [768, 576], [384, 576]]\n")
    regions = load_regions(y)
    assert [r.name for r in regions] == ["entrance", "stage"]
    assert regions[1].polygon[0] == (0.5, 0.0)
    j = tmp_path / "regions.json"
    j.write_text(json.dumps({"regions": [{"name": "entrance",
                                          "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}]}))
    assert load_regions(j)[0] == regions[0]


def test_empty_regions_file_means_whole_frame_only(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert load_regions(f) == []


def test_schema_error_names_file_key_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("regions:\n"
                 "  - name: a\n"
                 "    polygon: [[0, 0], [1, 0], [0, 1]]\n"
                 "  - name: b\n"
                 "    polgon: [[0, 0], [1, 0], [0, 1]]\n")
    with pytest.raises(RegionError) as e:
        load_regions(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}:") and "regions.1." in msg
    assert "\n" not in msg
    assert f"{f}:5:" in msg or f"{f}:4:" in msg


def test_invalid_name_and_geometry_errors_name_the_file(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("regions:\n  - name: 'bad name'\n    polygon: [[0, 0], [1, 0], [0, 1]]\n")
    with pytest.raises(RegionError, match=r"r\.yaml:2: regions\.0\.name"):
        load_regions(f)
    f.write_text("regions:\n  - name: bow\n    polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]\n")
    with pytest.raises(RegionError, match=r"r\.yaml: region 'bow': polygon is self-intersecting"):
        load_regions(f)


def test_missing_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(RegionError, match="regions file not found"):
        load_regions(tmp_path / "nope.yaml")
    f = tmp_path / "broken.yaml"
    f.write_text("regions:\n  - name: a\n    polygon: [[0, 0], [1, 0]\n")
    with pytest.raises(RegionError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_regions(f)
    j = tmp_path / "broken.json"
    j.write_text('{"regions": [}')
    with pytest.raises(RegionError, match=r"broken\.json:1: invalid JSON"):
        load_regions(j)
