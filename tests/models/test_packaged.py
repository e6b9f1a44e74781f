"""Every density model shipped in the package: it loads, its card names it, the card's sha256 is
that of the weights in the file, its measured figures are on full ShanghaiTech test splits, and
it counts a frame to a finite, non-negative number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamcount.models.weights import PACKAGED_DIR, load_model, state_sha256

FULL_SPLITS = {"shanghaitech/part_B/test_data": 316, "shanghaitech/part_A/test_data": 182}
PACKAGED = sorted(p for p in PACKAGED_DIR.glob("*.safetensors"))


@pytest.mark.parametrize("path", PACKAGED, ids=[p.stem for p in PACKAGED])
def test_packaged_model_card_matches_its_weights(path) -> None:
    net, card = load_model(path)
    assert card.name == path.stem
    assert card.sha256 == state_sha256(net.state_dict())
    if card.task == "detect":
        return
    assert card.metrics, f"{path.name}: a shipped density model carries its measured figures"
    for m in card.metrics:
        if m.dataset in FULL_SPLITS:
            assert m.images == FULL_SPLITS[m.dataset] and m.mae > 0
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 255, (1, 3, 96, 128), dtype=np.uint8)).float()
    with torch.no_grad():
        count = float(net(x).sum())
    assert np.isfinite(count) and count >= 0
