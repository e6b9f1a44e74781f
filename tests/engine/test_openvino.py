"""OpenVINO backends against fp32 torch; per-shape compilation; the int8 artefact cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from streamcount.engine.cache import META_FILE, ArtefactCache
from streamcount.engine.openvino import MAX_COMPILED, OpenVINOBackend, cpu_capabilities
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.models.card import ModelCard
from tests.engine.cpu_support import frames
from tests.engine.test_onnxruntime import close_fp32, close_int8

Model = tuple[nn.Module, ModelCard]
HAS_BF16 = "BF16" in cpu_capabilities()


@pytest.fixture(scope="module")
def calibration() -> list[np.ndarray]:
    return list(frames(6, 64, 96, seed=20))


@pytest.fixture(scope="module")
def ov_fp32(student: Model, cache_dir: Path) -> OpenVINOBackend:
    return OpenVINOBackend(*student, threads=2, cache=ArtefactCache(cache_dir))


@pytest.fixture(scope="module")
def ov_int8(student: Model, cache_dir: Path, calibration: list[np.ndarray]) -> OpenVINOBackend:
    return OpenVINOBackend(*student, threads=2, precision="int8", calibration_frames=calibration,
                           cache=ArtefactCache(cache_dir))


def test_fp32_matches_torch_and_compiles_per_shape(ov_fp32: OpenVINOBackend,
                                                   student: Model) -> None:
    torch_backend = TorchBackend(*student)
    shapes = [(1, 64, 96), (3, 64, 96), (2, 96, 64), (1, 40, 48), (1, 64, 96)]
    for shape in shapes:
        x = frames(*shape, seed=sum(shape))
        close_fp32(ov_fp32.infer(x), torch_backend.infer(x))
    # one compiled model per distinct N x H x W x 3, the repeated shape reused
    assert set(ov_fp32.compiled_shapes) == {(*s, 3) for s in shapes}
    assert len(ov_fp32.compiled_shapes) == 4
    d = ov_fp32.describe()
    assert d["backend"] == "openvino" and d["precision"] == "fp32" and d["threads"] == 2
    assert d["float_precision"] == "f32"


def test_compiled_models_are_bounded(student: Model, cache_dir: Path) -> None:
    backend = OpenVINOBackend(*student, threads=1, cache=ArtefactCache(cache_dir))
    for i in range(MAX_COMPILED + 2):
        backend.infer(frames(1, 8 * (i + 1), 16, seed=i))
    assert len(backend.compiled_shapes) == MAX_COMPILED
    assert backend.compiled_shapes[-1] == (1, 8 * (MAX_COMPILED + 2), 16, 3)


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 support (AVX512_BF16/AMX)")
def test_bf16_close_to_torch(student: Model, cache_dir: Path) -> None:
    backend = OpenVINOBackend(*student, threads=2, precision="bf16",
                              cache=ArtefactCache(cache_dir))
    x = frames(2, 64, 96, seed=7)
    out, ref = backend.infer(x), TorchBackend(*student).infer(x)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    assert out.sum() == pytest.approx(ref.sum(), rel=0.02)
    assert backend.describe()["float_precision"] == "bf16"


def test_int8_close_to_torch(ov_int8: OpenVINOBackend, student: Model) -> None:
    torch_backend = TorchBackend(*student)
    for shape in [(2, 64, 96), (1, 96, 64)]:
        x = frames(*shape, seed=5)
        close_int8(ov_int8.infer(x), torch_backend.infer(x))
    q = ov_int8.describe()
    assert q["backend"] == "openvino-int8" and q["precision"] == "int8"
    assert isinstance(q["quantization"], dict) and q["quantization"]["calibration_frames"] == 6


def test_int8_model_has_quantised_convolutions(ov_int8: OpenVINOBackend) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(ov_int8.artefact))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())


def test_int8_second_create_loads_from_cache(ov_int8: OpenVINOBackend, student: Model,
                                             cache_dir: Path,
                                             calibration: list[np.ndarray]) -> None:
    artefact = ov_int8.artefact
    meta = (artefact.parent / META_FILE).read_text()
    mtimes = {p.name: p.stat().st_mtime_ns for p in artefact.parent.iterdir()}
    again = OpenVINOBackend(*student, threads=2, precision="int8",
                            calibration_frames=calibration, cache=ArtefactCache(cache_dir))
    assert again.artefact == artefact
    assert (artefact.parent / META_FILE).read_text() == meta
    assert {p.name: p.stat().st_mtime_ns for p in artefact.parent.iterdir()} == mtimes
    recalled = OpenVINOBackend(*student, threads=2, precision="int8",
                               cache=ArtefactCache(cache_dir))
    assert recalled.artefact == artefact
    x = frames(1, 64, 96, seed=8)
    np.testing.assert_array_equal(recalled.infer(x), ov_int8.infer(x))


def test_corrupt_int8_artefact_is_rebuilt(ov_int8: OpenVINOBackend, student: Model,
                                          cache_dir: Path,
                                          calibration: list[np.ndarray]) -> None:
    xml = ov_int8.artefact
    built = json.loads((xml.parent / META_FILE).read_text())["built_at"]
    xml.write_text("<net>truncated")
    rebuilt = OpenVINOBackend(*student, threads=2, precision="int8",
                              calibration_frames=calibration, cache=ArtefactCache(cache_dir))
    assert json.loads((xml.parent / META_FILE).read_text())["built_at"] > built
    x = frames(1, 64, 96, seed=9)
    close_int8(rebuilt.infer(x), TorchBackend(*student).infer(x))
