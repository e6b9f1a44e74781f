"""Tiny synthetic datasets written to tmp_path for the training tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.io import savemat



def make_image(path: Path, h: int = 48, w: int = 64, gray: bool = False) -> None:
    """A random image file (colour or grayscale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    a = rng.integers(0, 255, (h, w) if gray else (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), a)


PTS = np.array([[10.5, 12.0], [30.0, 20.0], [50.0, 40.0]])


def make_shanghaitech(root: Path, split: str = "part_B/train_data", n: int = 3, pts=PTS,
                      h: int = 48, w: int = 64) -> Path:
    """ShanghaiTech layout; image i has the first min(i, len(pts)) points."""
    d = root / split
    for i in range(1, n + 1):
        make_image(d / "images" / f"IMG_{i}.jpg", h, w)
        info = np.empty((1, 1), dtype=object)
        inner = np.empty((1, 1), dtype=[("location", object), ("number", object)])
        inner[0, 0] = (pts[:i], np.array([[i]]))
        info[0, 0] = inner
        (d / "ground-truth").mkdir(parents=True, exist_ok=True)
        savemat(str(d / "ground-truth" / f"GT_IMG_{i}.mat"), {"image_info": info})
    return root
