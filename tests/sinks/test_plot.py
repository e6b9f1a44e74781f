"""counts.png: counts over time per region."""

from __future__ import annotations

from pathlib import Path

import cv2

from streamcount.messages import RegionCounts
from streamcount.sinks.plot import CountsPlot


def test_plot_is_written(tmp_path: Path) -> None:
    plot = CountsPlot(tmp_path / "counts.png", ["door", "all"], title="cam")
    for i in range(50):
        plot.write(RegionCounts("cam", i, i / 10, 0.0, {"door": i % 7, "all": 10 + i % 7}))
    assert plot.close() == tmp_path / "counts.png"
    img = cv2.imread(str(tmp_path / "counts.png"))
    assert img is not None and img.shape == (450, 1000, 3)
    assert img.std() > 10


def test_no_frames_no_plot(tmp_path: Path) -> None:
    assert CountsPlot(tmp_path / "counts.png", ["all"]).close() is None
    assert not (tmp_path / "counts.png").exists()
