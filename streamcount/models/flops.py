"""Parameter and FLOP counts in the convention of the SKT paper's README (skt.md section 1.3).

"Paper FLOPs" = conv multiply-accumulates (k_h * k_w * Cin/groups * Cout * Hout * Wout)
+ bias adds (Cout * Hout * Wout) + ReLU output elements + max-pool *input* elements, for one
image. Interpolation (BL's bilinear upsample), ``abs`` and other element-wise ops are not
counted. With this convention CSRNet gives 205.88 G and 1/4-CSRNet 13.09 G at 576x864, as the
README reports.

The count runs the network once on a ``meta`` copy, so no memory is allocated and no arithmetic
is done: counting the teacher at 2032x2912 is instant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from streamcount.models.stats import PAPER_INPUT_HW  # noqa: E402,F401 - re-exported


def count_params(net: nn.Module) -> int:
    """Number of parameters of ``net`` (all of them, trainable or not)."""
    return sum(p.numel() for p in net.parameters())


def _conv_flops(m: nn.Conv2d, out: torch.Tensor) -> int:
    _, cout, h, w = out.shape
    kh, kw = m.kernel_size
    macs = kh * kw * (m.in_channels // m.groups) * cout * h * w
    bias = cout * h * w if m.bias is not None else 0
    return macs + bias


def paper_flops(net: nn.Module, input_hw: tuple[int, int] = PAPER_INPUT_HW,
                in_channels: int | None = None) -> int:
    """FLOPs of one ``H x W`` image through ``net`` in the SKT paper convention.

    ``in_channels`` defaults to that of the network's first convolution.

    Example:
        >>> from streamcount.models.registry import build
        >>> round(paper_flops(build("csrnet_1_4"), (576, 864)) / 1e9, 2)
        13.09
    """
    h, w = input_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"input size must be positive, got {h}x{w}")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("network has no Conv2d layer to count")
    cin = in_channels if in_channels is not None else convs[0].in_channels

    meta_net = copy.deepcopy(net).to("meta").eval()
    total = 0

    def hook_for(kind: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            nonlocal total
            if kind == "conv":
                total += _conv_flops(m, out)  # type: ignore[arg-type]
            elif kind == "relu":
                total += out[0].numel()
            else:  # max-pool: counted on its input
                total += inputs[0][0].numel()
        return hook

    handles = []
    for m in meta_net.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(hook_for("conv")))
        elif isinstance(m, nn.ReLU):
            handles.append(m.register_forward_hook(hook_for("relu")))
        elif isinstance(m, nn.MaxPool2d):
            handles.append(m.register_forward_hook(hook_for("pool")))
    try:
        with torch.no_grad():
            meta_net(torch.empty(1, cin, h, w, device="meta"))
    finally:
        for hd in handles:
            hd.remove()
    return total
