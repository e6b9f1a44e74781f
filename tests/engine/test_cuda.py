"""CUDA backend: its batching/preprocessing path on CPU here; CUDA parts where a GPU exists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamcount.bench.parity import counts_of, mean_abs_rel_diff
from streamcount.engine.cuda import CudaBackend, HalfNet, build_device_model, probe_cuda
from streamcount.engine.preprocess import prepare_frame
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import BackendError
from tests.engine.gpu_parity_support import cpu_batch, load_mcnn_b, shanghaitech_images, student

HAS_CUDA = probe_cuda().available
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# -- without a GPU -----------------------------------------------------------------------------

@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_probe_says_why_cuda_is_missing() -> None:
    p = probe_cuda()
    assert not p.available and p.reason
    assert ("no CUDA support" in p.reason) == (torch.version.cuda is None)


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_constructing_without_cuda_raises_backend_error() -> None:
    net, card = student()
    with pytest.raises(BackendError, match=r"^CUDA not available: "):
        CudaBackend(net, card)


def test_cpu_device_matches_torch_backend() -> None:
    net, card = student()
    frames = _frames(2, 64, 96)
    ref = TorchBackend(net, card, threads=1).infer(frames)
    be = CudaBackend(net, card, precision="fp32", device="cpu")
    out = be.infer(frames)
    assert out.dtype == np.float32 and out.shape == ref.shape == (2, 8, 12)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    d = be.describe()
    assert d["backend"] == "cuda" and d["precision"] == "fp32" and d["cuda_graphs"] is False


def test_cpu_device_resizes_full_frames() -> None:
    """infer_resized(full frames) = the CPU path (cv2 INTER_AREA, exact 2x) within rounding."""
    net, card = student()
    frames = _frames(2, 128, 192, seed=1)
    small = np.stack([prepare_frame(f, (64, 96)) for f in frames])
    ref = TorchBackend(net, card, threads=1).infer(small)
    out = CudaBackend(net, card, precision="fp32", device="cpu").infer_resized(frames, (64, 96))
    assert out.shape == ref.shape
    # cv2 rounds the averaged pixels to uint8; the device path keeps them exact
    assert np.abs(out - ref).max() < 0.02 * np.abs(ref).max()


def test_max_batch_splits_without_changing_results() -> None:
    net, card = student()
    frames = _frames(5, 32, 48, seed=2)
    whole = CudaBackend(net, card, precision="fp32", device="cpu").infer(frames)
    split = CudaBackend(net, card, precision="fp32", device="cpu", max_batch=2).infer(frames)
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6)


def test_rejects_bad_input() -> None:
    net, card = student()
    be = CudaBackend(net, card, precision="fp32", device="cpu")
    with pytest.raises(ValueError, match="uint8 frames"):
        be.infer(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="multiple of 8"):
        be.infer_resized(_frames(1, 64, 64), (60, 64))
    with pytest.raises(ValueError, match="empty batch"):
        be.infer(np.zeros((0, 32, 32, 3), np.uint8))


def test_fp16_needs_cuda_and_unknown_precision_is_refused() -> None:
    net, card = student()
    with pytest.raises(BackendError, match="needs a CUDA device"):
        CudaBackend(net, card, precision="fp16", device="cpu")
    with pytest.raises(BackendError, match="precision 'int8' not supported"):
        build_device_model(net, card, "int8")


def test_fp16_model_is_a_copy() -> None:
    """Building the fp16 graph leaves the caller's network in fp32 (benchmarks reuse it)."""
    net, card = student()
    model = build_device_model(net, card, "fp16")
    assert isinstance(model.net, HalfNet)
    assert next(model.net.parameters()).dtype == torch.float16
    assert next(net.parameters()).dtype == torch.float32
    assert model.colour_weight.dtype == torch.float32  # the 0-255 affine stays in fp32


# -- on a GPU ----------------------------------------------------------------------------------

@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("graphs", [True, False])
def test_gpu_fp32_matches_cpu(graphs: bool) -> None:
    net, card = student()
    frames = _frames(3, 96, 128, seed=3)
    ref = TorchBackend(net, card).infer(frames)
    be = CudaBackend(net, card, precision="fp32", cuda_graphs=graphs)
    for _ in range(2):  # second call replays the captured graph
        out = be.infer(frames)
        # cuDNN may use TF32 for fp32 convolutions: about 1e-3 relative per product
        np.testing.assert_allclose(out, ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())
    assert be.describe()["gpu"]


@pytest.mark.gpu
@needs_gpu
def test_gpu_graphs_per_shape_and_fresh_inputs() -> None:
    """Each (batch, frame size, input size) gets its own graph; replays see new frames."""
    net, card = student()
    be = CudaBackend(net, card, precision="fp32", cuda_graphs=True)
    a, b = _frames(2, 64, 96, seed=4), _frames(2, 64, 96, seed=5)
    out_a, out_b = be.infer(a), be.infer(b)
    assert not np.allclose(out_a, out_b)
    np.testing.assert_allclose(be.infer(a), out_a, rtol=1e-5, atol=1e-6)
    be.infer(_frames(1, 64, 96))
    be.infer_resized(_frames(2, 128, 192), (64, 96))
    assert be.describe()["shapes_prepared"] == 3


@pytest.mark.gpu
@pytest.mark.data
@needs_gpu
@pytest.mark.parametrize("precision, tol", [("fp32", 0.005), ("fp16", 0.01)])
def test_gpu_count_parity_on_shanghaitech(shared_data, shanghaitech, precision: str,
                                          tol: float) -> None:
    """Counts on real images match fp32 PyTorch on CPU: 1% (fp16)."""
    net, card = load_mcnn_b(shared_data)
    images = shanghaitech_images(shanghaitech, n=8)
    batch, _ = cpu_batch(images, 1024, card.input_multiple)
    ref = counts_of(TorchBackend(net, card).infer(batch))
    out = counts_of(CudaBackend(net, card, precision=precision).infer(batch))
    assert mean_abs_rel_diff(ref, out) < tol
