"""JHU-Crowd++: ``<root>/<split>/images/N.jpg`` with ``gt/N.txt`` (one head per line:
``x y w h o b``; an empty file means no people)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamcount.errors import InputError
from training.datasets.common import AnnotatedImage, as_points, list_images, validate


def read_txt_points(path: Path) -> np.ndarray:
    """(x, y) of each line of a JHU ``gt/*.txt`` file."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except (ValueError, IndexError):
            raise InputError(f"{path}:{n}: expected 'x y w h o b', got {line.strip()!r}") from None
    return as_points(rows, path)


def load_split(root: str | Path, split: str = "train", check_images: bool = True
               ) -> list[AnnotatedImage]:
    """One JHU split (``train``, ``val`` or ``test``)."""
    d = Path(root) / split
    items = []
    for img in list_images(d / "images"):
        ann = d / "gt" / f"{img.stem}.txt"
        if not ann.is_file():
            raise InputError(f"{ann}: annotation missing for image {img.name}")
        items.append(AnnotatedImage("jhu", f"{split}/{img.stem}", img, ann, read_txt_points(ann)))
    if not items:
        raise InputError(f"{d / 'images'}: no images")
    return validate(items, check_images)
