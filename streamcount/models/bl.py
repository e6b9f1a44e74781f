"""Bayesian-Loss (BL, Ma et al. ICCV 2019) VGG-19 teacher and the 1/4-BL student of SKT.

Key names follow ``Bayesian-Crowd-Counting/models/vgg.py``: ``features.N`` and ``reg_layer.N``.
Floor-mode pooling, stride-16 features upsampled bilinearly x2, output ``abs``; stride 8.
The student's code was never released: widths /4 (params 1,345,169, as the SKT README reports).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_WIDTHS = {1: (64, 128, 256, 512), 4: (16, 32, 64, 128)}


def _vgg19_features(widths: tuple[int, int, int, int]) -> nn.Sequential:
    a, b, c, d = widths
    cfg: list[int | str] = [a, a, "M", b, b, "M", c, c, c, c, "M", d, d, d, d, "M", d, d, d, d]
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers)


class BLVGG19(nn.Module):
    """BL VGG-19 density regressor; ``ratio=4`` builds the 1/4 student."""

    OUTPUT_STRIDE = 8
    #: indices into ``features`` whose outputs are the declared distillation taps
    #: (relu1_1, pool1, pool2, pool3, pool4, relu5_4); the BL-side pairing is not published
    FEATURE_TAPS: tuple[int, ...] = (1, 4, 9, 18, 27, 35)

    def __init__(self, ratio: int = 1) -> None:
        super().__init__()
        if ratio not in _WIDTHS:
            raise ValueError(f"unsupported BL ratio {ratio}; choose from {sorted(_WIDTHS)}")
        widths = _WIDTHS[ratio]
        d = widths[3]
        self.features = _vgg19_features(widths)
        self.reg_layer = nn.Sequential(
            nn.Conv2d(d, d // 2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(d // 2, d // 4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(d // 4, 1, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return torch.abs(self.reg_layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.features(x))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Density map and the features at the declared ``FEATURE_TAPS``."""
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.FEATURE_TAPS:
                feats.append(x)
        return self._head(x), feats
