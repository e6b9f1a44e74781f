"""Helpers for the CPU backend tests: random and real frames, real MCNN part B weights."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.models.card import ModelCard
from streamcount.models.mcnn import MCNN

#: parity protocol on real images (issue 2): calibrate on part_B train, evaluate on part_B test
CALIBRATION_IMAGES = 16
TEST_IMAGES = 30
MAX_SIDE = 960


def frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 BGR frames (blurred noise: more image-like than white noise)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), np.uint8)
        out[i] = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return out


def load_mcnn_b(shared_data: Path) -> tuple[nn.Module, ModelCard]:
    """MCNN with the published ShanghaiTech part B weights (HDF5 ``DME.<key>`` -> ``<key>``)."""
    import h5py

    path = shared_data / "weights" / "mcnn" / "mcnn_shtechB_110.h5"
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent")
    state: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                state[name.removeprefix("DME.")] = torch.from_numpy(np.asarray(obj))
        f.visititems(visit)
    net = MCNN()
    net.load_state_dict(state, strict=True)
    return net.eval(), ModelCard.for_arch("mcnn", name="mcnn_shtechB_110",
                                          training_data="shanghaitech/part_B")


def partb_images(root: Path, split: str, n: int, multiple: int) -> list[np.ndarray]:
    """The first ``n`` part_B images of ``split`` at the model input size (max side 960)."""
    d = root / "part_B" / f"{split}_data" / "images"
    paths = sorted(d.glob("IMG_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))[:n]
    if len(paths) < n:
        pytest.skip(f"real data not available: fewer than {n} images in {d}")
    out = []
    for p in paths:
        image = cv2.imread(str(p), cv2.IMREAD_COLOR)
        out.append(prepare_frame(image, plan_input_size(*image.shape[:2], MAX_SIDE, multiple)))
    return out
