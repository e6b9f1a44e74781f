"""MCNN (Zhang et al. CVPR 2016) as published with crowdcount-mcnn (svishwa).

Three columns on a 1-channel 0-255 input, 'same' padding, ReLU after every conv (the final 1x1
fuse too), two 2x2 max-pools per column; output stride 4. Keys: ``branchK.I.conv.*`` and
``fuse.0.conv.*`` (the published HDF5 files add a ``DME.`` prefix).
"""

from __future__ import annotations

import torch
from torch import nn


class _Conv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def _branch(c: tuple[int, int, int, int], k: tuple[int, int, int, int]) -> nn.Sequential:
    return nn.Sequential(_Conv(1, c[0], k[0]), nn.MaxPool2d(2), _Conv(c[0], c[1], k[1]),
                         nn.MaxPool2d(2), _Conv(c[1], c[2], k[2]), _Conv(c[2], c[3], k[3]))


class MCNN(nn.Module):
    """Multi-column CNN, 127,953 parameters, output stride 4."""

    OUTPUT_STRIDE = 4
    FEATURE_TAPS: tuple[str, ...] = ("branch1", "branch2", "branch3")

    def __init__(self) -> None:
        super().__init__()
        self.branch1 = _branch((16, 32, 16, 8), (9, 7, 7, 7))
        self.branch2 = _branch((20, 40, 20, 10), (7, 5, 5, 5))
        self.branch3 = _branch((24, 48, 24, 12), (5, 3, 3, 3))
        self.fuse = nn.Sequential(_Conv(30, 1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Density map and the three column outputs."""
        feats = [self.branch1(x), self.branch2(x), self.branch3(x)]
        return self.fuse(torch.cat(feats, 1)), feats
