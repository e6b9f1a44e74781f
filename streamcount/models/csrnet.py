"""CSRNet teacher and 1/n-CSRNet students (SKT, Liu et al. 2020), with declared feature taps.

The layer structure and state_dict key names follow the official code exactly:
- teacher: ``frontend.N`` (VGG-16 conv1_1..conv4_3, ceil-mode pooling), ``backend.N`` (six 3x3
  convs with dilation 2), ``output_layer`` (1x1 conv, no activation);
- student: ``convX_Y.0`` (each a conv followed by ReLU) and ``conv5_0`` (plain 1x1 conv).

Both expose the six SKT distillation features *by declaration*: :meth:`forward_features` returns
the density map and the features at :attr:`FEATURE_TAPS`, in the order of skt.md section 2.1.
The training-only 1x1 adapters (``transform*``) live in :class:`SKTAdapters`, never in the
deploy model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# channel table of the official model_student_vgg.py (index = ratio - 2; 1 = teacher widths)
CHANNELS: dict[int, tuple[int, int, int, int]] = {
    1: (64, 128, 256, 512),
    2: (32, 64, 128, 256),
    3: (21, 43, 85, 171),
    4: (16, 32, 64, 128),
    5: (13, 26, 51, 102),
}

#: teacher channels at the six SKT feature positions (the adapters' output widths)
TEACHER_TAP_CHANNELS: tuple[int, ...] = (64, 64, 128, 256, 512, 256)

#: stride of each of the six SKT features relative to the input
TAP_STRIDES: tuple[int, ...] = (1, 2, 4, 8, 8, 8)

_FRONTEND_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
_BACKEND_CFG: tuple[int, ...] = (512, 512, 512, 256, 128, 64)


def _init_normal(module: nn.Module, std: float = 0.01) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _init_kaiming(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _make_layers(cfg: Sequence[int | str], in_channels: int, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            layers += [nn.Conv2d(in_channels, int(v), 3, padding=dilation, dilation=dilation),
                       nn.ReLU(inplace=True)]
            in_channels = int(v)
    return nn.Sequential(*layers)


class CSRNet(nn.Module):
    """The CSRNet teacher (16,263,489 parameters), output stride 8."""

    OUTPUT_STRIDE = 8
    #: (sub-module, index) of the six SKT feature taps, skt.md section 2.1
    FEATURE_TAPS: tuple[tuple[str, int], ...] = (
        ("frontend", 1), ("frontend", 4), ("frontend", 9), ("frontend", 16),
        ("backend", 1), ("backend", 7),
    )

    def __init__(self) -> None:
        super().__init__()
        self.frontend = _make_layers(_FRONTEND_CFG, 3)
        self.backend = _make_layers(_BACKEND_CFG, 512, dilation=2)
        self.output_layer = nn.Conv2d(64, 1, kernel_size=1)
        _init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.backend(self.frontend(x)))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Density map and the six declared feature maps (``FEATURE_TAPS`` order)."""
        taps: dict[str, set[int]] = {}
        for part, idx in self.FEATURE_TAPS:
            taps.setdefault(part, set()).add(idx)
        feats: list[torch.Tensor] = []
        for part in ("frontend", "backend"):
            seq: nn.Sequential = getattr(self, part)
            for i, layer in enumerate(seq):
                x = layer(x)
                if i in taps.get(part, ()):
                    feats.append(x)
        return self.output_layer(x), feats


class _ConvReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation),
                         nn.ReLU(inplace=True))


class CSRNetStudent(nn.Module):
    """1/n-CSRNet student of SKT (``model_student_vgg.py`` without the adapters).

    ``ratio`` 1 gives teacher widths in the student's layout; 2..5 are the paper's students
    (1/4: 1,017,681 parameters).
    """

    OUTPUT_STRIDE = 8
    #: name of the layer output after which each of the six SKT features is taken
    FEATURE_TAPS: tuple[str, ...] = ("conv0_0", "pool0", "pool1", "pool2", "conv4_0", "conv4_3")
    _ORDER: tuple[str, ...] = (
        "conv0_0", "conv0_1", "pool0", "conv1_0", "conv1_1", "pool1",
        "conv2_0", "conv2_1", "conv2_2", "pool2", "conv3_0", "conv3_1", "conv3_2",
        "conv4_0", "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv4_5",
    )

    def __init__(self, ratio: int = 4) -> None:
        super().__init__()
        if ratio not in CHANNELS:
            raise ValueError(f"unsupported ratio {ratio}; choose from {sorted(CHANNELS)}")
        self.ratio = ratio
        c0, c1, c2, c3 = CHANNELS[ratio]
        self.channels = (c0, c1, c2, c3)
        self.conv0_0 = _ConvReLU(3, c0)
        self.conv0_1 = _ConvReLU(c0, c0)
        self.pool0 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv1_0 = _ConvReLU(c0, c1)
        self.conv1_1 = _ConvReLU(c1, c1)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2_0 = _ConvReLU(c1, c2)
        self.conv2_1 = _ConvReLU(c2, c2)
        self.conv2_2 = _ConvReLU(c2, c2)
        self.pool2 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv3_0 = _ConvReLU(c2, c3)
        self.conv3_1 = _ConvReLU(c3, c3)
        self.conv3_2 = _ConvReLU(c3, c3)
        self.conv4_0 = _ConvReLU(c3, c3, 2)
        self.conv4_1 = _ConvReLU(c3, c3, 2)
        self.conv4_2 = _ConvReLU(c3, c3, 2)
        self.conv4_3 = _ConvReLU(c3, c2, 2)
        self.conv4_4 = _ConvReLU(c2, c1, 2)
        self.conv4_5 = _ConvReLU(c1, c0, 2)
        self.conv5_0 = nn.Conv2d(c0, 1, kernel_size=1)
        _init_kaiming(self)

    def tap_channels(self) -> tuple[int, ...]:
        """Channels of the six (unadapted) student features."""
        c0, c1, c2, c3 = self.channels
        return (c0, c0, c1, c2, c3, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._ORDER:
            x = getattr(self, name)(x)
        return self.conv5_0(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Density map and the six declared (unadapted) features, ``FEATURE_TAPS`` order."""
        feats: list[torch.Tensor] = []
        for name in self._ORDER:
            x = getattr(self, name)(x)
            if name in self.FEATURE_TAPS:
                feats.append(x)
        return self.conv5_0(x), feats


class SKTAdapters(nn.Module):
    """The six training-only 1x1 conv + ReLU adapters (``transform*`` in the official code)."""

    NAMES: tuple[str, ...] = ("transform0_0", "transform1_0", "transform2_0", "transform3_0",
                              "transform4_0", "transform4_3")

    def __init__(self, student_channels: Sequence[int],
                 teacher_channels: Sequence[int] = TEACHER_TAP_CHANNELS) -> None:
        super().__init__()
        for name, cin, cout in zip(self.NAMES, student_channels, teacher_channels, strict=True):
            self.add_module(name, nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=False)))
        _init_kaiming(self)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [getattr(self, n)(f) for n, f in zip(self.NAMES, feats, strict=True)]
