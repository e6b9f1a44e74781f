"""Density maps: local-window rendering equals gaussian_filter, mass, rules, cache, targets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.spatial import KDTree

from training.datasets.density import (
    SHA_RULE, SHB_RULE, QNRF_RULE, DensityCache, DensityRule, render_density, resize_density,
    stride_target, target_size)


def _official(points, h, w, rule):
    """The official GT generation (Python 3 port): one gaussian_filter per point."""
    gt = np.zeros((h, w))
    pix = []
    for x, y in points:
        if 0 <= int(x) < w and 0 <= int(y) < h:
            pix.append((int(y), int(x)))
    dens = np.zeros((h, w))
    if not pix:
        return dens
    pts = np.array([(c, r) for r, c in pix], dtype=float)
    if rule.kind != "fixed" and len(pix) > 1:
        k = rule.k + 1 if rule.kind == "adaptive" else 2
        dist, _ = KDTree(pts.copy(), leafsize=2048).query(pts, k=k)
    for i, (r, c) in enumerate(pix):
        delta = np.zeros((h, w))
        delta[r, c] = 1.0
        if rule.kind == "fixed":
            sigma = rule.sigma
        elif len(pix) == 1:
            sigma = np.average(np.array(gt.shape)) / 2.0 / 2.0
        elif rule.kind == "adaptive":
            sigma = (dist[i][1] + dist[i][2] + dist[i][3]) * 0.1
        else:
            sigma = min(dist[i][1], rule.max_sigma)
        dens += gaussian_filter(delta, sigma, mode="constant")
    return dens


@pytest.mark.parametrize("rule", [SHA_RULE, SHB_RULE, QNRF_RULE])
def test_local_window_equals_gaussian_filter(rule):
    rng = np.random.default_rng(1)
    h, w = 61, 83
    pts = np.column_stack([rng.uniform(0, w, 12), rng.uniform(0, h, 12)])
    pts[0] = (0.2, 0.4)  # corner point: most of its mass falls outside
    mine = render_density(pts, h, w, rule)
    ref = _official(pts, h, w, rule)
    np.testing.assert_allclose(mine, ref, atol=1e-6, rtol=1e-5)


def test_single_point_uses_quarter_mean_side():
    mine = render_density(np.array([[20.0, 10.0]]), 40, 60, SHA_RULE)
    ref = _official([(20.0, 10.0)], 40, 60, SHA_RULE)
    np.testing.assert_allclose(mine, ref, atol=1e-6)


def test_mass_conserved_for_interior_points_and_lost_at_border():
    h, w = 200, 300
    interior = np.array([[150.0, 100.0], [100.0, 90.0], [200.0, 120.0]])
    # fixed sigma 15, truncate 4: the window radius is 60 px, all inside -> sum 3 within 1e-5
    d = render_density(interior, h, w, SHB_RULE)
    assert abs(d.sum() - 3.0) < 1e-4
    corner = render_density(np.array([[0.0, 0.0]]), h, w, SHB_RULE)
    # a corner point keeps about a quarter of its mass (the official code loses the rest)
    assert 0.2 < corner.sum() < 0.3


def test_points_outside_dropped_and_duplicates_kept():
    d = render_density(np.array([[20.0, 20.0], [20.0, 20.0], [50.0, 5.0], [-3.0, 4.0]]), 40, 40,
                       DensityRule("fixed", sigma=2.0))
    assert abs(d.sum() - 2.0) < 1e-4


def test_target_size_is_ceil_pooling_size():
    assert target_size(768, 1024) == (96, 128)
    assert target_size(101, 77) == (13, 10)  # ceil(ceil(ceil(101/2)/2)/2) = 13


def test_stride_target_preserves_sum_approximately():
    d = render_density(np.array([[40.0, 30.0], [80.0, 50.0]]), 96, 128, SHB_RULE)
    t = stride_target(d)
    assert t.shape == (12, 16)
    assert abs(t.sum() - d.sum()) / d.sum() < 0.02
    r = resize_density(d, (24, 32))
    assert abs(r.sum() - d.sum()) / d.sum() < 0.02


def test_cache_hit_miss_and_invalidation(tmp_path):
    cache = DensityCache(tmp_path)
    pts = np.array([[10.0, 12.0], [30.0, 20.0]])
    a = cache.get("ds", "train/IMG_1", pts, 40, 50, SHB_RULE)
    assert (cache.hits, cache.misses) == (0, 1)
    assert cache.path("ds", "train/IMG_1", SHB_RULE).is_file()
    b = cache.get("ds", "train/IMG_1", pts, 40, 50, SHB_RULE)
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(a, b)
    # another rule is another entry; changed points re-render
    cache.get("ds", "train/IMG_1", pts, 40, 50, SHA_RULE)
    assert cache.misses == 2
    c = cache.get("ds", "train/IMG_1", pts[:1], 40, 50, SHB_RULE)
    assert cache.misses == 3
    np.testing.assert_array_equal(c, render_density(pts[:1], 40, 50, SHB_RULE))


def test_border_renormalize_keeps_every_point_mass():
    pts = np.array([[0.0, 0.0], [5.0, 30.0], [50.0, 20.0]])
    rule = DensityRule("fixed", sigma=15.0, border="renormalize")
    d = render_density(pts, 40, 60, rule)
    assert abs(d.sum() - 3.0) < 1e-4
    assert render_density(pts, 40, 60, SHB_RULE).sum() < 2.5  # official: lost at the border
    assert rule.key == "fixed_s15_renorm" and SHB_RULE.key == "fixed_s15"
