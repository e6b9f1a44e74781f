"""The shipped default counts a person as one whatever their size in pixels (accuracy issue,
item 4): SHB test images resized to 0.5x, 0.75x, 1.5x and 2x of native, counted through
streamcount's inference path with no downscaling (max side 4096); the mean absolute relative
change of the count against native stays within 10 % at each scale."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.models.weights import PACKAGED_DIR, load_model

SCALES = (0.5, 0.75, 1.5, 2.0)
#: every 13th SHB test image: 24 of the 316, spread over the split
IMAGES = tuple(range(1, 317, 13))
MAX_RELATIVE_CHANGE = 0.10


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="accuracy issue, item 4, not met yet: the shipped default "
                   "changes its count by 19.8 % / 6.9 % / 16.9 % / 24.3 % at 0.5x / 0.75x / 1.5x "
                   "/ 2x (measured 3 Dec 2026); strict, so a default that passes makes this fail "
                   "until the marker is removed")
def test_default_count_does_not_depend_on_person_size(shanghaitech: Path) -> None:
    net, card = load_model(PACKAGED_DIR / "default.safetensors")
    backend = TorchBackend(net, card)

    def count(img: np.ndarray) -> float:
        size = plan_input_size(img.shape[0], img.shape[1], 4096, card.input_multiple)
        return float(backend.infer(prepare_frame(img, size)[None])[0].sum())

    change = {s: [] for s in SCALES}
    for i in IMAGES:
        img = cv2.imread(str(shanghaitech / f"part_B/test_data/images/IMG_{i}.jpg"))
        native = count(img)
        for s in SCALES:
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
            c = count(cv2.resize(img, None, fx=s, fy=s, interpolation=interp))
            change[s].append(abs(c - native) / max(native, 1.0))
    mean = {s: float(np.mean(v)) for s, v in change.items()}
    print("mean |relative change| vs native:",
          ", ".join(f"{s}x {m:.1%}" for s, m in mean.items()))
    assert all(m <= MAX_RELATIVE_CHANGE for m in mean.values()), mean
