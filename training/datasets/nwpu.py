"""NWPU-Crowd: ``<root>/images/NNNN.jpg`` with ``jsons/NNNN.json`` (``"points": [[x, y], ...]``).

Split ``train`` / ``val`` reads the image ids from ``<root>/<split>.txt`` (first column); a split
without a list file (or ``all``) takes every image that has a JSON annotation. The test set has
no public annotations.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamcount.errors import InputError
from training.datasets.common import AnnotatedImage, as_points, list_images, validate


def read_json_points(path: Path):
    """``points`` of an NWPU annotation."""
    try:
        data = json.loads(path.read_text())
        raw = data["points"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not an NWPU annotation with 'points' ({e})") from None
    return as_points(raw, path)


def load_split(root: str | Path, split: str = "train", check_images: bool = True
               ) -> list[AnnotatedImage]:
    """Annotated images of one NWPU split."""
    root = Path(root)
    images = {p.stem: p for p in list_images(root / "images")}
    listing = root / f"{split}.txt"
    if split not in ("", "all") and listing.is_file():
        ids = [ln.split()[0] for ln in listing.read_text().splitlines() if ln.strip()]
        missing = [i for i in ids if i not in images]
        if missing:
            raise InputError(f"{root / 'images'}: image {missing[0]} listed in {listing} missing")
        stems = ids
    elif split in ("", "all"):
        stems = [s for s in images if (root / "jsons" / f"{s}.json").is_file()]
    else:
        raise InputError(f"{listing}: split list missing")
    items = []
    for s in stems:
        ann = root / "jsons" / f"{s}.json"
        if not ann.is_file():
            raise InputError(f"{ann}: annotation missing for image {images[s].name}")
        items.append(AnnotatedImage("nwpu", s, images[s], ann, read_json_points(ann)))
    if not items:
        raise InputError(f"{root}: no annotated images for split '{split}'")
    return validate(items, check_images)
