"""csrnet_1_4_dual: two students blended by local density, in the graph every backend runs."""

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
        m = _model(-2.0, -1.0)  # everything is dense
        assert torch.allclose(m(x), m.dense(x))


def test_weight_follows_local_density() -> None:
    d = torch.zeros(1, 1, 20, 20)
    d[..., :, 10:] = 1.0  # right half dense
    w = blend_weight(d, 0.2, 0.6)
    assert float(w[..., 10, 2]) == 0.0 and float(w[..., 10, 17]) == 1.0
    assert 0.0 < float(w[..., 10, 9]) < 1.0  # the edge is blended, not switched


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
    m = _model(0.001, 0.003)  # random weights give small densities: mix both regimes
    save_model(p, m, ModelCard.for_arch("csrnet_1_4_dual", "d"))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 128, 160, 3), dtype=np.uint8)
    ref = factory.create_backend("torch", p).infer(frames)
    got = factory.create_backend("onnx", p).infer(frames)
    assert np.allclose(factory.create_backend("openvino", p).infer(frames), ref, rtol=1e-3,
                       atol=1e-5 * float(np.abs(ref).max()))
    assert np.allclose(got, ref, rtol=1e-3, atol=1e-5 * float(np.abs(ref).max()))
