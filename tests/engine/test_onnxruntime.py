"""ONNX Runtime backends against fp32 torch; shapes; the int8 artefact cache."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from streamcount.engine.cache import META_FILE, ArtefactCache
from streamcount.engine.onnxruntime import OnnxRuntimeBackend
from streamcount.engine.quantize import CalibrationRequired
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard
from tests.engine.cpu_support import frames

Model = tuple[nn.Module, ModelCard]


def close_fp32(out: np.ndarray, ref: np.ndarray) -> None:
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4 * float(np.abs(ref).max()))


def close_int8(out: np.ndarray, ref: np.ndarray) -> None:
    """Loose: random weights are hard to quantise; the real-weight parity test is strict."""
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.98
    assert float(np.abs(out - ref).max()) < 0.2 * float(np.abs(ref).max())
    assert out.sum() == pytest.approx(ref.sum(), rel=0.06)


@pytest.fixture(scope="module")
def calibration() -> list[np.ndarray]:
    return list(frames(6, 64, 96, seed=10))


@pytest.fixture(scope="module")
def onnx_fp32(student: Model, cache_dir: Path) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(*student, threads=2, cache=ArtefactCache(cache_dir))


@pytest.fixture(scope="module")
def onnx_int8(student: Model, cache_dir: Path,
              calibration: list[np.ndarray]) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(*student, threads=2, precision="int8",
                              calibration_frames=calibration, cache=ArtefactCache(cache_dir))


@pytest.mark.parametrize("shape", [(1, 64, 96), (3, 64, 96), (2, 96, 64), (1, 40, 48)])
def test_fp32_matches_torch_for_any_shape(onnx_fp32: OnnxRuntimeBackend, student: Model,
                                          shape: tuple[int, int, int]) -> None:
    x = frames(*shape, seed=sum(shape))
    close_fp32(onnx_fp32.infer(x), TorchBackend(*student).infer(x))


def test_int8_close_to_torch(onnx_int8: OnnxRuntimeBackend, student: Model) -> None:
    torch_backend = TorchBackend(*student)
    for shape in [(2, 64, 96), (1, 96, 64)]:
        x = frames(*shape, seed=3)
        close_int8(onnx_int8.infer(x), torch_backend.infer(x))


def test_describe(onnx_fp32: OnnxRuntimeBackend, onnx_int8: OnnxRuntimeBackend) -> None:
    d = onnx_fp32.describe()
    assert d["backend"] == onnx_fp32.name == "onnx" and d["precision"] == "fp32"
    assert d["threads"] == 2 and Path(str(d["artefact"])).is_file()
    q = onnx_int8.describe()
    assert q["backend"] == onnx_int8.name == "onnx-int8" and q["precision"] == "int8"
    quant = q["quantization"]
    assert isinstance(quant, dict) and quant["calibration_frames"] == 6
    assert json.dumps(q)  # JSON-ready


def test_int8_is_quantised(onnx_int8: OnnxRuntimeBackend) -> None:
    import onnx

    ops = {n.op_type for n in onnx.load(str(onnx_int8.artefact)).graph.node}
    assert "QLinearConv" in ops


def test_int8_second_create_loads_from_cache(onnx_int8: OnnxRuntimeBackend, student: Model,
                                             cache_dir: Path,
                                             calibration: list[np.ndarray]) -> None:
    artefact = onnx_int8.artefact
    meta = (artefact.parent / META_FILE).read_text()
    mtime = artefact.stat().st_mtime_ns
    again = OnnxRuntimeBackend(*student, threads=2, precision="int8",
                               calibration_frames=calibration, cache=ArtefactCache(cache_dir))
    assert again.artefact == artefact
    assert artefact.stat().st_mtime_ns == mtime
    assert (artefact.parent / META_FILE).read_text() == meta
    # without frames: the calibration remembered from the run above
    recalled = OnnxRuntimeBackend(*student, threads=2, precision="int8",
                                  cache=ArtefactCache(cache_dir))
    assert recalled.artefact == artefact


def test_int8_without_any_calibration_raises(student: Model, cache_dir: Path,
                                             tmp_path: Path) -> None:
    # the fp32 export is reused from the session cache; the int8 cache is empty
    fresh = tmp_path / "cache"
    (fresh / "onnx-export").parent.mkdir(parents=True, exist_ok=True)
    (fresh / "onnx-export").symlink_to(cache_dir / "onnx-export")
    with pytest.raises(CalibrationRequired, match="needs calibration frames"):
        OnnxRuntimeBackend(*student, precision="int8", cache=ArtefactCache(fresh))


def test_corrupt_int8_artefact_is_rebuilt(onnx_int8: OnnxRuntimeBackend, student: Model,
                                          cache_dir: Path, calibration: list[np.ndarray],
                                          caplog: pytest.LogCaptureFixture) -> None:
    artefact = onnx_int8.artefact
    built = json.loads((artefact.parent / META_FILE).read_text())["built_at"]
    artefact.write_bytes(b"not an onnx model")
    with caplog.at_level(logging.WARNING):
        rebuilt = OnnxRuntimeBackend(*student, threads=2, precision="int8",
                                     calibration_frames=calibration,
                                     cache=ArtefactCache(cache_dir))
    assert "does not load" in caplog.text
    assert rebuilt.artefact == artefact
    assert json.loads((artefact.parent / META_FILE).read_text())["built_at"] > built
    x = frames(1, 64, 96, seed=4)
    close_int8(rebuilt.infer(x), TorchBackend(*student).infer(x))


def test_bad_precision_and_input(student: Model, onnx_fp32: OnnxRuntimeBackend) -> None:
    with pytest.raises(BackendError, match="precision 'fp16'"):
        OnnxRuntimeBackend(*student, precision="fp16")
    with pytest.raises(ValueError, match="N x H x W x 3"):
        onnx_fp32.infer(np.zeros((64, 96, 3), np.uint8))
