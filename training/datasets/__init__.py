"""Crowd-counting datasets: loaders to :class:`~training.datasets.common.AnnotatedImage` lists."""

from __future__ import annotations

import importlib
from pathlib import Path

from training.datasets.common import AnnotatedImage
from training.datasets.density import QNRF_RULE, SHA_RULE, SHB_RULE, DensityRule

#: dataset kind -> (module, default density rule or None for "by split")
_KINDS: dict[str, tuple[str, DensityRule | None]] = {
    "shanghaitech": ("training.datasets.shanghaitech", None),
    "ucf_qnrf": ("training.datasets.ucf", QNRF_RULE),
    "ucf_cc_50": ("training.datasets.ucf", SHA_RULE),
    "jhu": ("training.datasets.jhu", SHA_RULE),
    "nwpu": ("training.datasets.nwpu", SHA_RULE),
    "points": ("training.datasets.points", SHA_RULE),
}


def load_items(kind: str, root: str | Path, split: str, check_images: bool = True
               ) -> list[AnnotatedImage]:
    """Annotated images of ``split`` under ``root`` for dataset ``kind``."""
    if kind not in _KINDS:
        raise ValueError(f"unknown dataset {kind!r} (choose from {sorted(_KINDS)})")
    mod = importlib.import_module(_KINDS[kind][0])
    if kind == "ucf_cc_50":
        return mod.load_ucf_cc_50(root, split, check_images=check_images)
    return mod.load_split(root, split, check_images=check_images)


def default_rule(kind: str, split: str) -> DensityRule:
    """The density rule the official code uses for this dataset (SHA adaptive, SHB sigma 15,
    QNRF adaptive 1-NN capped at 30; others: the SHA rule)."""
    rule = _KINDS[kind][1]
    if rule is not None:
        return rule
    return SHA_RULE if "part_A" in split else SHB_RULE


__all__ = ["AnnotatedImage", "default_rule", "load_items"]
