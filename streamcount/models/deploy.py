"""The deploy graph: uint8 BGR frames in, density maps out, preprocessing inside the graph."""

from __future__ import annotations

import torch
from torch import nn

from streamcount.models.card import ModelCard

# ITU-R BT.601 luma weights, as cv2.cvtColor(BGR2GRAY), ordered B, G, R
_GRAY_BGR = (0.114, 0.587, 0.299)


class CountingNet(nn.Module):
    """Wraps a density network with the preprocessing its card prescribes.

    Input: ``uint8`` (or float 0-255) tensor ``N x H x W x 3`` in OpenCV's BGR order, H and W
    multiples of ``card.input_multiple``. Output: ``float32`` density ``N x H/s x W/s``
    (s = ``card.output_stride``); the count is its sum. A detector (``card.task == "detect"``)
    returns its decoded boxes ``N x boxes x (5 + C)`` instead. Colour conversion and mean/std
    normalisation are one per-channel affine map folded into the graph (no numpy pass).
    """

    def __init__(self, net: nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.net = net
        self.card = card
        scale = card.input_scale
        if card.colour == "rgb":
            # input channels are B, G, R; model wants R, G, B normalised
            w = torch.zeros(3, 3)
            for out_c, in_c in enumerate((2, 1, 0)):
                w[out_c, in_c] = scale / card.std[out_c]
            b = torch.tensor([-m / s for m, s in zip(card.mean, card.std, strict=True)])
        elif card.colour == "gray":
            w = torch.tensor([_GRAY_BGR]) * (scale / card.std[0])
            b = torch.tensor([-card.mean[0] / card.std[0]])
        else:
            raise ValueError(f"unknown colour mode {card.colour!r}")
        self.register_buffer("colour_weight", w, persistent=False)
        self.register_buffer("colour_bias", b, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float()
        # N,H,W,3 @ 3,C -> N,H,W,C, then to NCHW (a channels_last view, no copy)
        x = torch.matmul(x, self.colour_weight.t()) + self.colour_bias
        x = x.permute(0, 3, 1, 2)
        if self.card.task == "detect":  # N x boxes x (5 + C): see streamcount.models.darknet
            return self.net(x)
        return self.net(x).squeeze(1)
