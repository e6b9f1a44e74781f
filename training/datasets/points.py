"""A generic folder of images with point files, for your own footage.

Layout: ``<root>/<split>/`` holds images; each image ``X.jpg`` has a point file ``X.csv`` or
``X.json`` next to it or in ``<root>/<split>/annotations/``.

- CSV: one ``x,y`` per line; a header line (non-numeric) is skipped; extra columns ignored.
- JSON: a list of ``[x, y]`` pairs, or an object with ``"points"`` holding that list (pairs or
  ``{"x": .., "y": ..}`` objects).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from streamcount.errors import InputError
from training.datasets.common import AnnotatedImage, as_points, list_images, validate


def read_csv_points(path: Path) -> np.ndarray:
    rows = []
    with path.open(newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            try:
                rows.append((float(row[0]), float(row[1])))
            except (ValueError, IndexError):
                if n == 1:
                    continue  # header
                raise InputError(f"{path}:{n}: expected 'x,y', got {','.join(row)!r}") from None
    return as_points(rows, path)


def read_json_points(path: Path) -> np.ndarray:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: invalid JSON ({e})") from None
    if isinstance(data, dict):
        data = data.get("points")
        if data is None:
            raise InputError(f"{path}: JSON object has no 'points'")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        try:
            data = [(p["x"], p["y"]) for p in data]
        except KeyError:
            raise InputError(f"{path}: point objects need 'x' and 'y'") from None
    return as_points(data, path)


def find_annotation(img: Path) -> Path | None:
    for folder in (img.parent, img.parent / "annotations"):
        for ext in (".csv", ".json"):
            p = folder / f"{img.stem}{ext}"
            if p.is_file():
                return p
    return None


def load_split(root: str | Path, split: str = "", check_images: bool = True
               ) -> list[AnnotatedImage]:
    """Every image of ``<root>/<split>`` with its points (a missing point file is an error)."""
    d = Path(root) / split if split else Path(root)
    items = []
    for img in list_images(d):
        ann = find_annotation(img)
        if ann is None:
            raise InputError(f"{img}: no point file ({img.stem}.csv or {img.stem}.json)")
        pts = read_csv_points(ann) if ann.suffix == ".csv" else read_json_points(ann)
        items.append(AnnotatedImage(f"points/{d.name}", img.stem, img, ann, pts))
    if not items:
        raise InputError(f"{d}: no images")
    return validate(items, check_images)
