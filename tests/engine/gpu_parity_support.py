"""Shared helpers for the GPU-backend tests: real trained weights and real test images.

MCNN's published ShanghaiTech part B weights (../shared/data/weights/mcnn) give meaningful
counts (a random network's counts hover near zero, where relative differences mean nothing).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.models.card import ModelCard
from streamcount.models.mcnn import MCNN
from streamcount.models.registry import build


def load_mcnn_b(shared_data: Path) -> tuple[torch.nn.Module, ModelCard]:
    """MCNN with the published part-B weights (``DME.`` prefix stripped), eval mode."""
    import h5py

    path = shared_data / "weights" / "mcnn" / "mcnn_shtechB_110.h5"
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent")
    state = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                state[name.removeprefix("DME.")] = torch.from_numpy(np.asarray(obj))
        f.visititems(visit)
    net = MCNN()
    net.load_state_dict(state, strict=True)
    return net.eval(), ModelCard.for_arch("mcnn", name="mcnn_shtechB", sha256="mcnn-b-110")


def student(seed: int = 0) -> tuple[torch.nn.Module, ModelCard]:
    """The 1/4-CSRNet SKT student with seeded random weights."""
    torch.manual_seed(seed)
    return build("csrnet_1_4").eval(), ModelCard.for_arch("csrnet_1_4", name="student-test")


def shanghaitech_images(shanghaitech: Path, n: int = 4, part: str = "B") -> list[np.ndarray]:
    """The first ``n`` test images (BGR uint8, original size) of a ShanghaiTech part."""
    d = shanghaitech / f"part_{part}" / "test_data" / "images"
    paths = sorted(d.glob("IMG_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))[:n]
    if len(paths) < n:
        pytest.skip(f"real data not available: fewer than {n} images in {d}")
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


def cpu_batch(images: list[np.ndarray], max_side: int, multiple: int
              ) -> tuple[np.ndarray, tuple[int, int]]:
    """The CPU path's input: each image resized with cv2 INTER_AREA to the planned size
    (all images must share a size), stacked."""
    size = plan_input_size(images[0].shape[0], images[0].shape[1], max_side, multiple)
    return np.stack([prepare_frame(im, size) for im in images]), size
