"""SKT loss terms against independently worked-out values; gradient flow; frozen teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.skt import SKTLoss, cosine_loss, dense_fsp_loss, fsp_matrices
from training.tasks import SKTTask

TEACHER_CH = (64, 64, 128, 256, 512, 256)
STRIDES = (1, 2, 4, 8, 8, 8)


def _features(h8: int, w8: int, seed: int, n: int = 1, channels=TEACHER_CH):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.rand(n, c, h8 * 8 // s, w8 * 8 // s, generator=g)
             for c, s in zip(channels, STRIDES, strict=True)]
    dens = torch.rand(n, 1, h8, w8, generator=g)
    return feats, dens


# ---- an independent numpy implementation of skt.md section 2.3 (one sample) ----
def _np_pool(x: np.ndarray, k: int) -> np.ndarray:
    c, h, w = x.shape
    hh, ww = math.ceil(h / k), math.ceil(w / k)
    out = np.full((c, hh, ww), -np.inf)
    for i in range(hh):
        for j in range(ww):
            out[:, i, j] = x[:, i * k:(i + 1) * k, j * k:(j + 1) * k].max(axis=(1, 2))
    return out


def _np_in(x: np.ndarray) -> np.ndarray:
    m = x.mean(axis=(1, 2), keepdims=True)
    v = x.var(axis=(1, 2), keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5)


def _np_fsp_loss(s_feats, t_feats) -> float:
    def prep(feats):
        out = []
        for f, s in zip(feats, STRIDES + (8,), strict=True):
            f = f.astype(np.float64)
            if s < 8:
                f = _np_pool(f, 8 // s)
            out.append(_np_in(f).reshape(f.shape[0], -1))
        return out
    S, T = prep(s_feats), prep(t_feats)
    total = 0.0
    for i in range(7):
        for j in range(i + 1, 7):
            hw = S[i].shape[1]
            total += ((S[i] @ S[j].T / hw - T[i] @ T[j].T / hw) ** 2).sum()
    return total


def test_identical_features_give_zero_cos_and_fsp():
    feats, dens = _features(2, 3, 0)
    loss = SKTLoss()(feats, feats, dens, dens, dens)
    for k in ("gt", "soft", "fsp"):
        assert float(loss[k]) == pytest.approx(0.0, abs=1e-6)
    assert float(loss["cos"]) == pytest.approx(0.0, abs=1e-4)
    assert float(loss["total"]) == pytest.approx(0.0, abs=1e-4)


def test_fsp_matrix_hand_case():
    x1 = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # 1 x 2 x 1 x 2
    x2 = torch.tensor([[[[1.0, 0.0]]]])  # 1 x 1 x 1 x 2
    m = fsp_matrices([x1, x2])
    assert list(m) == [(0, 1)]
    # X1 X2^T / (h w) = [[1*1 + 2*0], [3*1 + 4*0]] / 2
    torch.testing.assert_close(m[(0, 1)], torch.tensor([[[0.5], [1.5]]]))


def test_dense_fsp_loss_matches_independent_numpy():
    s_feats, s_dens = _features(3, 2, 1)
    t_feats, t_dens = _features(3, 2, 2)
    got = float(dense_fsp_loss(s_feats + [s_dens], t_feats + [t_dens]))
    want = _np_fsp_loss([f[0].numpy() for f in s_feats] + [s_dens[0].numpy()],
                        [f[0].numpy() for f in t_feats] + [t_dens[0].numpy()])
    assert got == pytest.approx(want, rel=1e-4)


def test_fsp_with_odd_sizes_uses_ceil_pooling():
    # stride-1 map 17 x 9 pools to 3 x 2 with ceil mode, matching a 3 x 2 stride-8 map
    g = torch.Generator().manual_seed(3)
    sizes = [(17, 9), (9, 5), (5, 3), (3, 2), (3, 2), (3, 2)]
    s = [torch.rand(1, c, *hw, generator=g) for c, hw in zip(TEACHER_CH, sizes, strict=True)]
    t = [torch.rand(1, c, *hw, generator=g) for c, hw in zip(TEACHER_CH, sizes, strict=True)]
    sd, td = torch.rand(1, 1, 3, 2, generator=g), torch.rand(1, 1, 3, 2, generator=g)
    got = float(dense_fsp_loss(s + [sd], t + [td]))
    want = _np_fsp_loss([f[0].numpy() for f in s] + [sd[0].numpy()],
                        [f[0].numpy() for f in t] + [td[0].numpy()])
    assert got == pytest.approx(want, rel=1e-4)


def test_cosine_hand_case():
    # one position, 2 channels: s = (1, 0), t = (1, 1) -> 1 - 1/sqrt(2); s = 0 -> 1 - 0
    s = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])  # 1 x 2 x 1 x 2
    t = torch.tensor([[[[1.0, 3.0]], [[1.0, 0.0]]]])
    got = float(cosine_loss([s], [t]))
    assert got == pytest.approx((1 - 1 / math.sqrt(2)) + 1.0, abs=1e-6)


def test_density_terms_are_sums_of_squares():
    feats, dens = _features(2, 2, 4)
    sd = torch.zeros(1, 1, 2, 2)
    td = torch.full((1, 1, 2, 2), 2.0)
    gt = torch.full((1, 1, 2, 2), 1.0)
    out = SKTLoss(lambda_fsp=0.25, lambda_cos=0.75)(feats, feats, sd, td, gt)
    assert float(out["gt"]) == pytest.approx(4.0)
    assert float(out["soft"]) == pytest.approx(16.0)
    want = 4.0 + 16.0 + 0.25 * float(out["fsp"]) + 0.75 * float(out["cos"])
    assert float(out["total"]) == pytest.approx(want, rel=1e-6)


def test_batch_equals_sum_of_samples():
    s_feats, s_dens = _features(2, 3, 5, n=3)
    t_feats, t_dens = _features(2, 3, 6, n=3)
    gt = torch.rand(3, 1, 2, 3)
    loss = SKTLoss()
    batch = loss(s_feats, t_feats, s_dens, t_dens, gt)
    per = [loss([f[i:i + 1] for f in s_feats], [f[i:i + 1] for f in t_feats],
                s_dens[i:i + 1], t_dens[i:i + 1], gt[i:i + 1]) for i in range(3)]
    for k in ("gt", "soft", "fsp", "cos", "total"):
        assert float(batch[k]) == pytest.approx(sum(float(p[k]) for p in per), rel=1e-5)
    # batch 1 equals the per-sample (official, sample-0) definition
    want0 = _np_fsp_loss([f[0].numpy() for f in s_feats] + [s_dens[0].numpy()],
                         [f[0].numpy() for f in t_feats] + [t_dens[0].numpy()])
    assert float(per[0]["fsp"]) == pytest.approx(want0, rel=1e-4)


def test_gradients_reach_only_student_and_adapters_and_teacher_stays_frozen():
    torch.manual_seed(0)
    task = SKTTask(arch="csrnet_1_4", teacher=None)
    task.train()
    assert not task.teacher.training
    opt = torch.optim.Adam(task.trainable_parameters(), lr=1e-3)
    teacher_before = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    images = torch.randint(0, 255, (2, 3, 32, 24), dtype=torch.uint8)
    target = torch.rand(2, 1, 4, 3)
    losses = task(images, target)
    assert set(losses) == {"total", "gt", "soft", "fsp", "cos"}
    opt.zero_grad()
    losses["total"].backward()
    for name, p in task.teacher.named_parameters():
        assert p.grad is None, name
    student_grads = [p.grad for p in task.student.student.parameters()]
    adapter_grads = [p.grad for p in task.student.adapters.parameters()]
    assert all(g is not None for g in adapter_grads)
    assert any(g is not None and g.abs().sum() > 0 for g in student_grads)
    opt.step()
    task.train()
    assert not task.teacher.training
    for k, v in task.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher_before[k])
    assert np.isfinite(float(losses["total"].detach()))


def test_least_squares_adapters_match_a_widened_teacher():
    """Fitted adapters map the student's taps onto the teacher's: against a teacher widened from
    the student itself, cosine and FSP losses drop to ~0 (Kaiming adapters: large)."""
    from training.tasks import SKTTask
    from training.widen import widen_student

    torch.manual_seed(0)
    task = SKTTask("csrnet_1_4")
    with torch.no_grad():
        for m in task.student.student.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.uniform_(0.0, 0.05)
    task.teacher.load_state_dict(widen_student(task.student.student, spread=0.2).state_dict())
    x = torch.randint(0, 255, (2, 3, 48, 48), dtype=torch.uint8)
    y = torch.rand(2, 1, 6, 6)
    with torch.no_grad():
        before = task(x, y)
        task.fit_adapters([x])
        after = task(x, y)
    assert float(before["cos"]) > 100
    assert float(after["cos"]) < 1e-3 * float(before["cos"])
    assert float(after["fsp"]) < 1e-3 * float(before["fsp"]) + 1e-6
    assert float(after["soft"]) < 1e-8
