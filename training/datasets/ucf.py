"""UCF-QNRF and UCF_CC_50.

- UCF-QNRF: ``<root>/Train|Test/img_NNNN.jpg`` with ``img_NNNN_ann.mat['annPoints']`` (N x 2, x y).
- UCF_CC_50: ``<root>/N.jpg`` with ``N_ann.mat['annPoints']``, N = 1..50 (grayscale images,
  converted to RGB when read). Split ``all`` (or empty) is every image; ``foldK_train`` /
  ``foldK_test`` (K = 1..5) is the usual 5-fold protocol, fold K testing images 10K-9..10K.
"""

from __future__ import annotations

import re
from pathlib import Path

from scipy.io import loadmat

from streamcount.errors import InputError
from training.datasets.common import AnnotatedImage, as_points, list_images, validate


def read_ann_points(path: Path):
    """``annPoints`` of a UCF ``*_ann.mat`` file."""
    try:
        raw = loadmat(str(path))["annPoints"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a UCF annotation with 'annPoints' ({e})") from None
    return as_points(raw, path)


def _items(folder: Path, dataset: str, prefix: str, images: list[Path]) -> list[AnnotatedImage]:
    items = []
    for img in images:
        ann = folder / f"{img.stem}_ann.mat"
        if not ann.is_file():
            raise InputError(f"{ann}: annotation missing for image {img.name}")
        items.append(AnnotatedImage(dataset, f"{prefix}{img.stem}", img, ann, read_ann_points(ann)))
    if not items:
        raise InputError(f"{folder}: no images")
    return items


def load_split(root: str | Path, split: str = "Train", check_images: bool = True
               ) -> list[AnnotatedImage]:
    """UCF-QNRF ``Train`` or ``Test``."""
    folder = Path(root) / split
    imgs = list_images(folder)
    return validate(_items(folder, "ucf_qnrf", f"{split}/", imgs), check_images)


def load_ucf_cc_50(root: str | Path, split: str = "all", check_images: bool = True
                   ) -> list[AnnotatedImage]:
    """UCF_CC_50, all images or one side of a 5-fold split."""
    folder = Path(root)
    imgs = [p for p in list_images(folder) if p.stem.isdigit()]
    m = re.fullmatch(r"fold([1-5])_(train|test)", split or "all")
    if m:
        k = int(m.group(1))
        test = set(range(10 * k - 9, 10 * k + 1))
        imgs = [p for p in imgs if (int(p.stem) in test) == (m.group(2) == "test")]
    elif split not in ("", "all"):
        raise InputError(f"UCF_CC_50 split '{split}' unknown (all, fold1_train ... fold5_test)")
    return validate(_items(folder, "ucf_cc_50", "", imgs), check_images)
