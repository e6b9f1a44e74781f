"""One density model for sparse and dense scenes: two 1/4-CSRNet students, blended by density.

Operators do not know ShanghaiTech A from B. A student trained on sparse street scenes (SHB)
counts sparse and moderate crowds well and undercounts packed ones; a student trained on dense
crowds (SHA) counts those well and overcounts sparse scenes. :class:`DualDensity` runs both on
the frame and, cell by cell, takes the dense student's density where the sparse student sees a
dense crowd around that cell:

    local = avg_pool(D_sparse, 5x5 cells, stride 1)          (people per output cell, smoothed)
    m     = clamp((local - lo) / (hi - lo), 0, 1)             (0: sparse, 1: dense)
    D     = D_sparse + m * (D_dense - D_sparse)

``lo`` and ``hi`` are buffers stored with the weights; :mod:`training.combine` fits them on the
held-out validation images of both training sets (never on a test split). The whole rule is part
of the graph, so every backend (ONNX Runtime, OpenVINO, int8, TensorRT) runs it unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from streamcount.models.csrnet import CSRNetStudent

#: side of the square window (output cells) over which local density is averaged
WINDOW = 5


def blend_weight(sparse: torch.Tensor, lo: torch.Tensor | float,
                 hi: torch.Tensor | float) -> torch.Tensor:
    """Per-cell weight of the dense student (0..1) from the sparse student's density map."""
    local = F.avg_pool2d(sparse, WINDOW, stride=1, padding=WINDOW // 2,
                         count_include_pad=False)
    return ((local - lo) / (hi - lo)).clamp(0.0, 1.0)


class DualDensity(nn.Module):
    """Sparse- and dense-scene 1/4-CSRNet students blended by local density (see module doc)."""

    OUTPUT_STRIDE = 8

    def __init__(self, ratio: int = 4) -> None:
        super().__init__()
        self.sparse = CSRNetStudent(ratio)
        self.dense = CSRNetStudent(ratio)
        # people per output cell (8x8 input pixels); the defaults are replaced by the fit
        self.register_buffer("lo", torch.tensor(0.05))
        self.register_buffer("hi", torch.tensor(0.15))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ds = self.sparse(x)
        dd = self.dense(x)
        return ds + blend_weight(ds, self.lo, self.hi) * (dd - ds)
