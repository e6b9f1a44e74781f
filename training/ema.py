"""An exponential moving average of a network's weights (``optim.ema_decay``).

Fine-tuning on a few hundred images with a small batch leaves the weights, and with them the
validation error, jumping from epoch to epoch (the SHB teacher's hold-out MAE ranged 9.5-28.5
within one run), so the epoch that happens to validate best is a noisy pick. The average of the
recent weights, ``avg <- decay * avg + (1 - decay) * w`` after every optimiser step, is smoother
and usually at least as good (Polyak averaging). With an average, validation, the best
checkpoints and therefore the exported weights are the averaged ones; ``last.pt`` keeps both,
so a resumed run continues the same average.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """Exponential moving average (fp32) of the floating-point state of ``net``."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.avg = {k: v.detach().float().clone() for k, v in net.state_dict().items()
                    if v.is_floating_point()}

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Blend the current weights of ``net`` in (after an optimiser step)."""
        state = net.state_dict()
        for k, a in self.avg.items():
            a.lerp_(state[k].detach().float(), 1.0 - self.decay)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "avg": {k: v.clone() for k, v in self.avg.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.avg) ^ set(state["avg"])
        if missing:
            raise KeyError(f"weight average does not fit the network: {sorted(missing)[:3]}")
        self.avg = {k: v.float().clone() for k, v in state["avg"].items()}
        self.updates = int(state.get("updates", 0))

    @contextmanager
    def swapped_in(self, net: nn.Module) -> Iterator[None]:
        """Within the block ``net`` holds the averaged weights; its own are restored after."""
        own = {k: v.detach().clone() for k, v in net.state_dict().items() if k in self.avg}
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if k in self.avg:
                    v.copy_(self.avg[k].to(v.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in net.state_dict().items():
                    if k in own:
                        v.copy_(own[k])
