"""csrnet_1_4_dual / csrnet_dual: two students (or two CSRNet teachers) switched per frame by the dense student's mean density, in the
graph every backend runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamcount.models.card import ModelCard
from streamcount.models.dual import DualDensity, blend_weight
from streamcount.models.registry import build


def _model(lo: float, hi: float) -> DualDensity:
    torch.manual_seed(0)
    m = build("csrnet_1_4_dual").eval()
    assert isinstance(m, DualDensity)
    m.lo.fill_(lo)
    m.hi.fill_(hi)
    return m


def test_blend_takes_sparse_below_lo_and_dense_above_hi() -> None:
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        m = _model(1e6, 2e6)  # nothing is dense
        assert torch.allclose(m(x), m.sparse(x))
        m = _model(-1e6, -1e6 + 1)  # everything is dense
        assert torch.allclose(m(x), m.dense(x))


def test_weight_follows_each_frames_mean_density() -> None:
    d = torch.zeros(3, 1, 20, 20)
    d[1, :, :, 10:] = 1.0  # half the frame packed: mean 0.5
    d[2] = 1.0             # all packed: mean 1
    w = blend_weight(d, 0.2, 0.6)
    assert w.shape == (3, 1, 1, 1)
    assert w.flatten().tolist() == pytest.approx([0.0, 0.75, 1.0])  # mixed between lo and hi


def test_the_dense_student_decides_frame_by_frame() -> None:
    m = _model(0.2, 0.6)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ds, dd = m.sparse(x), m.dense(x)
        w = blend_weight(dd, m.lo, m.hi)
        assert torch.allclose(m(x), ds + w * (dd - ds))
        # a batch of two frames is blended frame by frame, as two single frames
        assert torch.allclose(m(x)[1:], m(x[1:]), rtol=1e-4, atol=1e-4)


def test_thresholds_are_stored_with_the_weights(tmp_path) -> None:
    from streamcount.models.weights import load_model, save_model

    p = tmp_path / "dual.safetensors"
    save_model(p, _model(0.03, 0.09), ModelCard.for_arch("csrnet_1_4_dual", "d"))
    net, card = load_model(p)
    assert card.arch == "csrnet_1_4_dual"
    assert float(net.lo) == pytest.approx(0.03) and float(net.hi) == pytest.approx(0.09)


def test_onnx_runtime_runs_the_blend_like_torch(tmp_path) -> None:
    from streamcount.engine import factory
    from streamcount.models.weights import save_model

    p = tmp_path / "dual.safetensors"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 128, 160, 3), dtype=np.uint8)
    m = _model(0.0, 1.0)
    q = tmp_path / "dense.safetensors"
    save_model(q, m.dense, ModelCard.for_arch("csrnet_1_4", "d"))
    crowd = float(factory.create_backend("torch", q).infer(frames).mean())
    # lo/hi around this frame's mean density: the output mixes both students (weight 0.25)
    m.lo.fill_(crowd - 0.5)
    m.hi.fill_(crowd + 1.5)
    save_model(p, m, ModelCard.for_arch("csrnet_1_4_dual", "d"))
    ref = factory.create_backend("torch", p).infer(frames)
    got = factory.create_backend("onnx", p).infer(frames)
    assert np.allclose(factory.create_backend("openvino", p).infer(frames), ref, rtol=1e-3,
                       atol=1e-5 * float(np.abs(ref).max()))
    assert np.allclose(got, ref, rtol=1e-3, atol=1e-5 * float(np.abs(ref).max()))


def test_csrnet_dual_pairs_two_teachers_whose_weights_load_as_they_are() -> None:
    """csrnet_dual holds two full CSRNets: each member takes an imported CSRNet state dict
    unchanged (the layout of csrnet_sha and the SHB teacher)."""
    from streamcount.models.csrnet import CSRNet

    with torch.device("meta"):
        m = build("csrnet_dual")
    assert isinstance(m, DualDensity)
    assert isinstance(m.sparse, CSRNet) and isinstance(m.dense, CSRNet)
    assert list(m.sparse.state_dict()) == list(CSRNet().state_dict())
    assert sorted(m.state_dict()) == sorted(
        [f"sparse.{k}" for k in CSRNet().state_dict()] + [f"dense.{k}" for k in
                                                          CSRNet().state_dict()] + ["lo", "hi"])


def test_of_copies_two_loaded_members_and_the_thresholds() -> None:
    torch.manual_seed(1)
    a, b = build("csrnet_1_4").eval(), build("csrnet_1_4").eval()
    m = DualDensity.of(a, b, 0.02, 0.05)
    assert not m.training and isinstance(m.sparse, type(a))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(m.sparse(x), a(x)) and torch.equal(m.dense(x), b(x))
    assert float(m.lo) == pytest.approx(0.02) and float(m.hi) == pytest.approx(0.05)
    with pytest.raises(TypeError, match="MCNN"):
        DualDensity.of(build("mcnn"), build("mcnn"), 0.0, 1.0)
