"""The SKT distillation losses (skt.md section 2), as the official ``SKT_distill.py`` computes them.

- ``gt``   = sum (D_s - D_gt)^2
- ``soft`` = sum (D_s - D_t)^2                       (teacher density distilled, weight 1)
- ``fsp``  = sum over the 21 pairs i<j of the 7 features (6 taps + density) of
             sum (FSP^S_ij - FSP^T_ij)^2, FSP_ij = X_i X_j^T / (h w) after max-pooling taps 1-3
             to stride 8 (kernel = stride = 2^s, ceil mode) and InstanceNorm2d (affine=False,
             eps=1e-5) on all 7
- ``cos``  = sum over taps, samples and positions of 1 - cos_sim(S'_t, T_t) (dim=1, eps=1e-8)
- ``total`` = gt + soft + lambda_fsp * fsp + lambda_cos * cos  (lambda 0.5 and 0.5)

The official ``gram()`` uses only sample 0 of a batch (it assumes batch size 1); here a batch
contributes the sum of its per-sample FSP losses, identical at batch size 1. Teacher-side FSP
matrices are computed under ``no_grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamcount.models.csrnet import TAP_STRIDES, SKTAdapters

FSP_TARGET_STRIDE = 8
IN_EPS = 1e-5
COS_EPS = 1e-8


def scale_process(features: Sequence[torch.Tensor],
                  strides: Sequence[int] = TAP_STRIDES) -> list[torch.Tensor]:
    """Max-pool each feature from its stride to stride 8 (kernel = stride = 8/s, ceil mode)."""
    out = []
    for f, s in zip(features, strides, strict=True):
        k = FSP_TARGET_STRIDE // s
        out.append(F.max_pool2d(f, kernel_size=k, stride=k, ceil_mode=True) if k > 1 else f)
    return out


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """``nn.InstanceNorm2d(C)`` (affine=False, no running stats, eps=1e-5)."""
    return F.instance_norm(x, eps=IN_EPS)


def fsp_matrices(features: Sequence[torch.Tensor]) -> dict[tuple[int, int], torch.Tensor]:
    """All pairwise FSP matrices ``N x C_i x C_j`` of already stride-8, normalised features."""
    flat = [f.flatten(2) for f in features]  # N x C x hw
    mats = {}
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            hw = flat[i].shape[2]
            if flat[j].shape[2] != hw:
                raise ValueError(f"FSP features {i} and {j} differ in size: "
                                 f"{tuple(features[i].shape)} vs {tuple(features[j].shape)}")
            mats[(i, j)] = torch.bmm(flat[i], flat[j].transpose(1, 2)) / hw
    return mats


def dense_fsp_loss(student: Sequence[torch.Tensor],
                   teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inter-layer relation loss over 7 features (6 taps then density), summed over samples."""
    s = [instance_norm(f.float()) for f in scale_process(student[:6]) + list(student[6:])]
    with torch.no_grad():
        t = [instance_norm(f.float()) for f in scale_process(teacher[:6]) + list(teacher[6:])]
        t_fsp = fsp_matrices(t)
    s_fsp = fsp_matrices(s)
    total = s[0].new_zeros(())
    for key, m in s_fsp.items():
        total = total + ((m - t_fsp[key]) ** 2).sum()
    return total


def cosine_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Intra-layer pattern loss: sum over taps, samples, positions of 1 - cosine similarity."""
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student, teacher, strict=True):
        total = total + (1 - F.cosine_similarity(s.float(), t.detach().float(), dim=1,
                                                 eps=COS_EPS)).sum()
    return total


class SKTLoss(nn.Module):
    """SKT's total loss; returns unweighted terms ``gt, soft, fsp, cos`` and ``total``."""

    def __init__(self, lambda_fsp: float = 0.5, lambda_cos: float = 0.5) -> None:
        super().__init__()
        self.lambda_fsp = lambda_fsp
        self.lambda_cos = lambda_cos

    def forward(self, student_features: Sequence[torch.Tensor],
                teacher_features: Sequence[torch.Tensor], student_density: torch.Tensor,
                teacher_density: torch.Tensor, gt_density: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(student_features) != 6 or len(teacher_features) != 6:
            raise ValueError("SKTLoss expects six student and six teacher features")
        sd = student_density.float()
        td = teacher_density.detach().float()
        gt = ((sd - gt_density.float()) ** 2).sum()
        soft = ((sd - td) ** 2).sum()
        fsp = dense_fsp_loss(list(student_features) + [sd], list(teacher_features) + [td])
        cos = cosine_loss(student_features, teacher_features)
        total = gt + soft + self.lambda_fsp * fsp + self.lambda_cos * cos
        return {"gt": gt, "soft": soft, "fsp": fsp, "cos": cos, "total": total}


class SKTStudent(nn.Module):
    """A student plus its six training-only adapters (``transform*``): features for SKT."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.adapters = SKTAdapters(student.tap_channels())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        density, feats = self.student.forward_features(x)
        return density, self.adapters(feats)

    @torch.no_grad()
    def fit_adapters(self, pairs: Sequence[tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]],
                     ridge: float = 1e-6, max_positions: int = 50_000, seed: int = 0) -> None:
        """Set each adapter to the least-squares map from student to teacher features.

        ``pairs`` holds (student taps, teacher taps) of some training batches. A student that
        starts from trained weights (fine-tuning with SKT) then meets small cosine and FSP
        losses at once, instead of the huge ones of Kaiming-initialised adapters whose gradients
        would first wreck its trained features. (The paper trains the student from scratch with
        Kaiming adapters; this is for the fine-tuning recipe, ``task.adapter_init=lstsq``.)
        ``ridge`` is relative to the mean diagonal of the student features' Gram matrix.
        """
        gen = torch.Generator().manual_seed(seed)
        for k, name in enumerate(SKTAdapters.NAMES):
            xs = torch.cat([s[k].float().permute(0, 2, 3, 1).reshape(-1, s[k].shape[1])
                            for s, _ in pairs])
            ys = torch.cat([t[k].float().permute(0, 2, 3, 1).reshape(-1, t[k].shape[1])
                            for _, t in pairs])
            if xs.shape[0] > max_positions:
                keep = torch.randperm(xs.shape[0], generator=gen)[:max_positions]
                xs, ys = xs[keep], ys[keep]
            xa = torch.cat([xs, torch.ones(xs.shape[0], 1)], dim=1).double()
            gram = xa.T @ xa
            reg = ridge * float(gram.diagonal()[:-1].mean()) + 1e-12
            eye = torch.eye(gram.shape[0], dtype=gram.dtype)
            eye[-1, -1] = 0  # the bias is not regularised
            sol = torch.linalg.solve(gram + reg * eye, xa.T @ ys.double())  # (C_s + 1) x C_t
            conv: nn.Conv2d = getattr(self.adapters, name)[0]
            conv.weight.copy_(sol[:-1].T.reshape(conv.weight.shape).to(conv.weight.dtype))
            conv.bias.copy_(sol[-1].to(conv.bias.dtype))
