"""Frame preparation: one scale factor for both axes, then a crop to whole density cells."""

from __future__ import annotations

import numpy as np
import pytest

from streamcount.engine.preprocess import (
    input_coverage,
    plan_input_size,
    prepare_frame,
    resized_size,
)
from streamcount.regions import Region, RegionCounter


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_native_size_not_a_multiple_of_8_is_cropped_not_resized() -> None:
    """A 683-row ShanghaiTech A image keeps its pixels: 3 rows cropped, none resampled."""
    img = _textured(683, 1024)
    size = plan_input_size(683, 1024, None, 8)
    assert size == (680, 1024)
    assert resized_size((683, 1024), size) == (683, 1024)
    out = prepare_frame(img, size)
    assert out.shape == (680, 1024, 3) and out.flags.c_contiguous
    assert np.array_equal(out, img[:680])
    assert input_coverage((683, 1024), size) == pytest.approx((680 / 683, 1.0))


def test_downscale_keeps_the_aspect_ratio_then_crops() -> None:
    """1080p at max side 960: an exact 2x downscale to 960x540, then 4 rows cropped."""
    img = _textured(1080, 1920, seed=1)
    size = plan_input_size(1080, 1920, 960, 8)
    assert size == (536, 960)
    assert resized_size((1080, 1920), size) == (540, 960)
    out = prepare_frame(img, size)
    full = img.reshape(540, 2, 960, 2, 3).mean(axis=(1, 3))  # INTER_AREA at exactly 2x
    assert np.abs(out.astype(np.float64) - full[:536]).max() <= 0.5 + 1e-9


def test_frames_already_at_the_input_size_are_untouched() -> None:
    img = _textured(576, 768, seed=2)
    assert prepare_frame(img, plan_input_size(576, 768, 960, 8)) is img
    assert input_coverage((576, 768), (576, 768)) == (1.0, 1.0)


def test_regions_follow_the_cropped_input() -> None:
    """A region over the bottom strip the crop removed counts nothing; a region over the rest
    counts everything, and so does ``all``."""
    frame_hw, size = (683, 1024), (680, 1024)
    density = np.ones((680 // 8, 1024 // 8), np.float32)
    cut = 680 / 683
    top = Region("top", ((0.0, 0.0), (1.0, 0.0), (1.0, cut), (0.0, cut)))
    strip = Region("strip", ((0.0, cut), (1.0, cut), (1.0, 1.0), (0.0, 1.0)))
    counts = RegionCounter([top, strip], size, 8, frame_hw).count(density)
    assert counts["top"] == pytest.approx(density.sum(), rel=1e-6)
    assert counts["strip"] == pytest.approx(0.0, abs=1e-6)
    assert counts["all"] == pytest.approx(density.sum())
    # without the frame size the grid is assumed to cover the whole frame: the strip would
    # take a share of the last row of cells
    assert RegionCounter([strip], size, 8).count(density)["strip"] > 0.3
