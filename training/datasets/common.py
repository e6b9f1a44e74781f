"""Annotated images shared by every dataset loader, and their validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streamcount.errors import InputError

#: how far (pixels) an annotated point may lie outside the image before the file is rejected
POINT_TOLERANCE = 1.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class AnnotatedImage:
    """One image and its head points (N x 2 float, x then y, pixels)."""

    dataset: str  # cache namespace, e.g. "shanghaitech/part_B"
    image_id: str  # unique within the dataset, e.g. "train_data/IMG_1"
    image_path: Path
    annotation_path: Path
    points: np.ndarray = field(repr=False)

    @property
    def count(self) -> int:
        """Ground-truth count: the number of annotated points."""
        return int(len(self.points))


def read_image_rgb(path: Path) -> np.ndarray:
    """uint8 H x W x 3 RGB (grayscale and alpha images converted); InputError names the file."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f"{path}: unreadable image")
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file; InputError if it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f"{path}: unreadable image")
    return int(img.shape[0]), int(img.shape[1])


def as_points(raw: object, where: Path) -> np.ndarray:
    """N x 2 float64 array of (x, y) from ``raw``; InputError naming ``where`` otherwise."""
    try:
        pts = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: annotation is not a list of (x, y) points") from None
    if pts.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise InputError(f"{where}: annotation has shape {pts.shape}, expected N x 2 points")
    pts = pts[:, :2]
    if not np.all(np.isfinite(pts)):
        raise InputError(f"{where}: annotation contains non-finite coordinates")
    return pts


def check_points(item: AnnotatedImage, height: int, width: int,
                 tolerance: float = POINT_TOLERANCE) -> None:
    """InputError naming the annotation file if a point lies outside the image by > tolerance."""
    p = item.points
    if len(p) == 0:
        return
    bad = ((p[:, 0] < -tolerance) | (p[:, 1] < -tolerance)
           | (p[:, 0] > width + tolerance) | (p[:, 1] > height + tolerance))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{item.annotation_path}: point {i} at ({p[i, 0]:.1f}, {p[i, 1]:.1f}) "
                         f"is outside the {width}x{height} image {item.image_path.name}")


def validate(items: Sequence[AnnotatedImage], check_images: bool = True) -> list[AnnotatedImage]:
    """Check every item (image decodable, points inside); the first bad file is named."""
    out = []
    for it in items:
        if not it.image_path.is_file():
            raise InputError(f"{it.image_path}: image file missing")
        if check_images:
            h, w = image_size(it.image_path)
            check_points(it, h, w)
        out.append(it)
    return out


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` (sorted naturally: IMG_2 before IMG_10)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder missing")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=natural_key)


def natural_key(p: Path) -> tuple:
    """Sort key splitting digits, so IMG_2 < IMG_10."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name))
