"""One density model for sparse and dense scenes: two density networks, switched by how crowded
the frame is.

Operators do not know ShanghaiTech A from B. A student trained on sparse street scenes (SHB)
counts sparse and moderate crowds well and misses packed ones (on dense crowds it sees texture,
not people); a student trained on dense crowds (SHA, or SHA + SHB) counts those well and is less
exact on sparse scenes. :class:`DualDensity` runs both on the frame and lets the *dense* student,
which sees every kind of crowd, say how crowded the frame is:

    crowd = mean(D_dense)                                     (people per output cell, per frame)
    m     = clamp((crowd - lo) / (hi - lo), 0, 1)             (0: sparse frame, 1: dense frame)
    D     = D_sparse + m * (D_dense - D_sparse)

The output is still a density map, so regions, heat maps and the hybrid rule use it unchanged;
between ``lo`` and ``hi`` the two maps are mixed, so the count does not jump from one frame to
the next. ``lo`` and ``hi`` are buffers stored with the weights; :mod:`training.combine` fits
them on held-out training images of both kinds (never on a test split). The rule is part of the
graph, so every backend (ONNX Runtime, OpenVINO, int8, TensorRT) runs it unchanged.

Two architectures use it: ``csrnet_1_4_dual`` (two 1/4-CSRNet students, 2.04 M parameters) and
``csrnet_dual`` (two full CSRNets, 32.53 M: the model ``accurate``, the SHB teacher for sparse
frames and the imported ShanghaiTech A CSRNet for dense ones, about 11x the default's cost per
frame with OpenVINO int8 on a CPU).

Why the frame and the dense student: with ``shb_student_kd`` and ``ab_student_gt`` on 40 SHA
and 40 SHB held-out train images, gating cell by cell on the sparse student's map (the first
design) scored worst, because that student sees almost nothing in a packed crowd; gating on the
dense student's map averaged over 5, 9, 15 or 31 cells scored better, over the whole frame best
(README, "Runs of 3 Dec 2026, evening").
"""

from __future__ import annotations

import torch
from torch import nn

from streamcount.models.csrnet import CSRNet, CSRNetStudent


def blend_weight(dense: torch.Tensor, lo: torch.Tensor | float,
                 hi: torch.Tensor | float) -> torch.Tensor:
    """Per-frame weight of the dense student (N x 1 x 1 x 1, 0..1) from its density map."""
    crowd = dense.mean(dim=(2, 3), keepdim=True)
    return ((crowd - lo) / (hi - lo)).clamp(0.0, 1.0)


class DualDensity(nn.Module):
    """Sparse- and dense-scene CSRNets switched per frame (see module doc).

    ``ratio`` is the channel divisor of both networks: 4 for 1/4-CSRNet students, 1 for full
    CSRNet teachers."""

    OUTPUT_STRIDE = 8

    def __init__(self, ratio: int = 4) -> None:
        super().__init__()
        self.sparse: nn.Module = CSRNet() if ratio == 1 else CSRNetStudent(ratio)
        self.dense: nn.Module = CSRNet() if ratio == 1 else CSRNetStudent(ratio)
        # people per output cell (8x8 input pixels), frame mean; replaced by the fit
        self.register_buffer("lo", torch.tensor(0.01))
        self.register_buffer("hi", torch.tensor(0.03))

    @classmethod
    def of(cls, sparse: nn.Module, dense: nn.Module, lo: float, hi: float) -> DualDensity:
        """A dual model holding copies of two loaded members' weights and the thresholds
        ``lo``/``hi``; the members' architecture (student ratio or CSRNet) is taken from them."""
        if isinstance(sparse, CSRNet):
            ratio = 1
        elif isinstance(sparse, CSRNetStudent):
            ratio = sparse.ratio
        else:
            raise TypeError(f"a dual model pairs CSRNets or CSRNet students, not "
                            f"{type(sparse).__name__}")
        model = cls(ratio)
        model.sparse.load_state_dict(sparse.state_dict())
        model.dense.load_state_dict(dense.state_dict())
        with torch.no_grad():
            model.lo.fill_(float(lo))
            model.hi.fill_(float(hi))
        return model.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ds = self.sparse(x)
        dd = self.dense(x)
        return ds + blend_weight(dd, self.lo, self.hi) * (dd - ds)
