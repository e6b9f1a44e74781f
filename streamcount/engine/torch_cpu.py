"""fp32 PyTorch backend: always available, the reference for every parity test."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streamcount.models.card import ModelCard
from streamcount.models.deploy import CountingNet
from streamcount.models.lazy import LazyNet, materialize


class TorchBackend:
    """Eager PyTorch, fp32, channels_last, ``inference_mode``."""

    name = "torch"

    def __init__(self, net: nn.Module | LazyNet, card: ModelCard, threads: int | None = None,
                 device: str = "cpu") -> None:
        if threads:
            torch.set_num_threads(threads)
        self.card = card
        self.device = torch.device(device)
        self.model = CountingNet(materialize(net), card).eval().to(self.device)
        self.model.net.to(memory_format=torch.channels_last)

    def infer(self, frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
            return self.model(x).float().cpu().numpy()

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "precision": "fp32", "device": str(self.device),
                "threads": torch.get_num_threads()}
