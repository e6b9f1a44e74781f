"""TensorRT backend: settings, keys, buckets and error paths here; engines where they can run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamcount.bench.parity import counts_of, mean_abs_rel_diff
from streamcount.engine.cuda import probe_cuda
from streamcount.engine.engine_cache import EngineCache
from streamcount.engine.tensorrt import (
    TensorRTBackend,
    _import_torch_tensorrt,
    compile_settings,
    input_spec_shapes,
    parse_batch_range,
    plan_buckets,
    probe_tensorrt,
)
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import BackendError
from tests.engine.gpu_parity_support import cpu_batch, load_mcnn_b, shanghaitech_images, student

HAS_CUDA = probe_cuda().available
TRT = probe_tensorrt()
no_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")
no_trt = pytest.mark.skipif(not TRT.available, reason="torch-tensorrt not installed")


def test_batch_range_parsing() -> None:
    assert parse_batch_range("1:4:8") == (1, 4, 8)
    assert parse_batch_range("4") == (4, 4, 4)
    for bad in ("4:2:8", "0:1:2", "1:2", "a:b:c"):
        with pytest.raises(ValueError, match="batch range"):
            parse_batch_range(bad)


def test_buckets_are_the_planned_input_sizes() -> None:
    # 1080p and 720p both plan to 960x540 cropped to a multiple of 8: one shared engine
    sizes = plan_buckets([(1080, 1920), (720, 1280), (1080, 1920), (576, 768)], 960, 8)
    assert sizes == [(536, 960), (576, 768)]


def test_input_shapes_are_nhwc_over_the_batch_range() -> None:
    assert input_spec_shapes((544, 960), (1, 4, 8)) == (
        (1, 544, 960, 3), (4, 544, 960, 3), (8, 544, 960, 3))


@pytest.mark.parametrize("known, expect", [
    # recent versions: strong typing, the graph's own fp16 casts / Q/DQ nodes decide
    ({"min_block_size", "use_explicit_typing", "enabled_precisions"},
     {"min_block_size": 1, "use_explicit_typing": True}),
    # older, weakly typed versions: precisions are allowed explicitly
    ({"min_block_size", "enabled_precisions"},
     {"min_block_size": 1, "enabled_precisions": {torch.float16, torch.float32}}),
    # newest layout where strong typing is always on and the option is gone
    ({"min_block_size"}, {"min_block_size": 1}),
])
def test_compile_settings_follow_the_installed_version(known: set[str], expect: dict) -> None:
    assert compile_settings(known, "fp16") == expect


def test_compile_settings_int8_and_unknown_precision() -> None:
    s = compile_settings({"min_block_size", "enabled_precisions"}, "int8")
    assert torch.int8 in s["enabled_precisions"]
    with pytest.raises(BackendError, match="precision 'bf8'"):
        compile_settings({"min_block_size"}, "bf8")


@pytest.mark.skipif(TRT.available, reason="torch-tensorrt is installed")
def test_missing_torch_tensorrt_is_a_backend_error() -> None:
    assert not TRT.available and "torch-tensorrt" in TRT.reason
    with pytest.raises(BackendError, match="torch-tensorrt"):
        _import_torch_tensorrt()


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_constructing_without_cuda_raises_backend_error() -> None:
    net, card = student()
    with pytest.raises(BackendError, match=r"^CUDA not available: "):
        TensorRTBackend(net, card, precision="fp16")


def test_argument_errors_come_before_any_gpu_work() -> None:
    net, card = student()
    with pytest.raises(BackendError, match="int8 needs calibration frames"):
        TensorRTBackend(net, card, precision="int8")
    with pytest.raises(BackendError, match="precision 'fp8'"):
        TensorRTBackend(net, card, precision="fp8")
    with pytest.raises(BackendError, match="engine format"):
        TensorRTBackend(net, card, fmt="onnx")
    with pytest.raises(BackendError, match="batch range"):
        TensorRTBackend(net, card, batch=(4, 2, 8))


# -- with a GPU and torch-tensorrt ---------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.data
@no_cuda
@no_trt
@pytest.mark.parametrize("precision, tol", [("fp32", 0.005), ("fp16", 0.01), ("int8", 0.03)])
def test_trt_count_parity_on_shanghaitech(shared_data, shanghaitech, tmp_path: Path,
                                          precision: str, tol: float) -> None:
    """Counts match fp32 PyTorch on real images: 1% (fp16), 3% (int8)."""
    net, card = load_mcnn_b(shared_data)
    images = shanghaitech_images(shanghaitech, n=8)
    batch, size = cpu_batch(images, 1024, card.input_multiple)
    calib = shanghaitech_images(shanghaitech, n=16, part="A") if precision == "int8" else None
    ref = counts_of(TorchBackend(net, card).infer(batch))
    be = TensorRTBackend(net, card, precision=precision, sizes=[size], batch=(1, 4, 8),
                         calibration_frames=calib, cache=EngineCache(tmp_path))
    assert mean_abs_rel_diff(ref, counts_of(be.infer(batch))) < tol
    # a batch of one agrees with the same frame inside the full batch
    np.testing.assert_allclose(be.infer(batch[:1]), be.infer(batch)[:1], rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@no_cuda
@no_trt
def test_trt_engine_is_cached_and_min_batch_padded(tmp_path: Path) -> None:
    net, card = student()
    cache = EngineCache(tmp_path)
    be = TensorRTBackend(net, card, precision="fp16", sizes=[(96, 128)], batch=(2, 2, 4),
                         cache=cache)
    assert be.engine_status[(96, 128)].startswith("built")
    frames = np.random.default_rng(0).integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    one = be.infer(frames)  # padded to the minimum batch of 2
    assert one.shape == (1, 12, 16)
    again = TensorRTBackend(net, card, precision="fp16", sizes=[(96, 128)], batch=(2, 2, 4),
                            cache=cache)
    assert again.engine_status[(96, 128)] == "cached"
    np.testing.assert_allclose(again.infer(frames), one, rtol=1e-3, atol=1e-4)
