"""ShanghaiTech part A / B in the official layout.

``<root>/part_X/<split>/images/IMG_N.jpg`` with ``ground-truth/GT_IMG_N.mat``
(``loadmat(f)['image_info'][0,0][0,0][0]`` = N x 2 head points, x then y).
"""

from __future__ import annotations

from pathlib import Path

from scipy.io import loadmat

from streamcount.errors import InputError
from training.datasets.common import AnnotatedImage, as_points, list_images, validate
from training.datasets.density import SHA_RULE, SHB_RULE, DensityRule


def read_mat_points(path: Path):
    """Head points of one ShanghaiTech ``GT_IMG_N.mat``."""
    try:
        raw = loadmat(str(path))["image_info"][0, 0][0, 0][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise InputError(f"{path}: not a ShanghaiTech annotation ({e})") from None
    return as_points(raw, path)


def split_dir(root: str | Path, split: str) -> Path:
    """``root/split`` where split is e.g. ``part_B/train_data``; InputError if missing."""
    d = Path(root) / split
    if not (d / "images").is_dir():
        raise InputError(f"{d}: not a ShanghaiTech split (no images/ folder)")
    return d


def load_split(root: str | Path, split: str, check_images: bool = True) -> list[AnnotatedImage]:
    """All annotated images of one split, e.g. ``load_split(root, 'part_B/train_data')``."""
    d = split_dir(root, split)
    part = split.strip("/").split("/")[0]
    items = []
    for img in list_images(d / "images"):
        ann = d / "ground-truth" / f"GT_{img.stem}.mat"
        if not ann.is_file():
            raise InputError(f"{ann}: annotation missing for image {img.name}")
        sub = "/".join(split.strip("/").split("/")[1:])
        items.append(AnnotatedImage(f"shanghaitech/{part}", f"{sub}/{img.stem}", img, ann,
                                    read_mat_points(ann)))
    if not items:
        raise InputError(f"{d / 'images'}: no images")
    return validate(items, check_images)


def default_rule(split: str) -> DensityRule:
    """Part A: geometry-adaptive kernels; part B: fixed sigma 15 (skt.md section 3.1)."""
    return SHA_RULE if "part_A" in split else SHB_RULE
