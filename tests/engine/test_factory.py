"""The backend factory: names, model references, auto selection and fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from streamcount.engine import factory
from streamcount.engine.cache import ENV_VAR, ArtefactCache
from streamcount.engine.factory import BACKENDS, BackendSpec, backend_names, create_backend
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import BackendError, ModelError
from streamcount.models.card import ModelCard
from streamcount.models.weights import save_model
from tests.engine.cpu_support import frames
from tests.engine.test_onnxruntime import close_fp32

Model = tuple[nn.Module, ModelCard]


def test_names_are_stable() -> None:
    assert {"torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "auto"} <= set(
        backend_names())
    assert factory.AUTO_PREFERENCE[-1] == "torch"
    assert set(factory.AUTO_PREFERENCE) <= set(BACKENDS)


def test_unknown_backend_is_a_one_line_error(student: Model) -> None:
    with pytest.raises(BackendError, match="unknown backend 'tensorflow'") as e:
        create_backend("tensorflow", student)
    assert "\n" not in str(e.value) and "openvino-int8" in str(e.value)


def test_missing_runtime_is_a_backend_error(student: Model,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "npu", BackendSpec(
        "streamcount.engine.torch_cpu:TorchBackend", requires=("streamcount_no_such_runtime",)))
    with pytest.raises(BackendError, match="'npu' is not available: streamcount_no_such_runtime"):
        create_backend("npu", student)


@pytest.mark.parametrize("name", ["torch", "onnx", "openvino"])
def test_float_backends_from_a_weight_file(name: str, student: Model, cache: ArtefactCache,
                                           tmp_path: Path) -> None:
    path = tmp_path / "student.safetensors"
    save_model(path, *student)
    backend = create_backend(name, path, threads=2)
    assert backend.name == name and backend.describe()["threads"] == 2
    x = frames(2, 64, 96, seed=1)
    close_fp32(backend.infer(x), TorchBackend(*student).infer(x))


def test_missing_model_file_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="not found"):
        create_backend("torch", "/nonexistent/model.safetensors")


def test_int8_without_calibration_falls_back_to_float(student: Model, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))  # an empty cache: nothing calibrated before
    with caplog.at_level(logging.WARNING):
        backend = create_backend("onnx-int8", student)
    assert backend.name == "onnx"
    assert "needs calibration frames" in caplog.text and "'onnx'" in caplog.text


def test_auto_with_calibration_frames_picks_openvino_int8(student: Model, cache: ArtefactCache,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    calib = list(frames(4, 64, 96, seed=30))
    with caplog.at_level(logging.INFO, logger="streamcount.engine.factory"):
        backend = create_backend("auto", student, calibration_frames=calib)
    assert backend.name == "openvino-int8"
    assert "auto" in caplog.text and "openvino-int8" in caplog.text


def test_auto_without_frames_on_an_empty_cache_picks_a_float_openvino(
        student: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with caplog.at_level(logging.INFO, logger="streamcount.engine.factory"):
        backend = create_backend("auto", student)
    from streamcount.engine.openvino import cpu_capabilities

    expected = "openvino-bf16" if "BF16" in cpu_capabilities() else "openvino"
    assert backend.name == expected
    assert "openvino-int8: no calibration frames" in caplog.text


def test_backend_that_fails_to_load_falls_back_to_torch(student: Model, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    # a cache "directory" that is a file: the ONNX export cannot be written
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv(ENV_VAR, str(blocker))
    with caplog.at_level(logging.WARNING):
        backend = create_backend("openvino", student, threads=2)
    assert isinstance(backend, TorchBackend)
    assert "backend 'openvino' failed to load" in caplog.text and "'torch'" in caplog.text
    # auto goes down its list instead and still returns a working backend
    auto = create_backend("auto", student, calibration_frames=list(frames(2, 64, 96)))
    assert auto.name == "torch"
    assert auto.infer(frames(1, 64, 96)).shape == (1, 8, 12)


def test_registration_is_one_entry(student: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "torch-1t", BackendSpec(
        "streamcount.engine.torch_cpu:TorchBackend", ("torch",), threads=False))
    assert "torch-1t" in backend_names()
    backend = create_backend("torch-1t", student)
    assert isinstance(backend, TorchBackend)
    out = backend.infer(np.zeros((1, 16, 16, 3), np.uint8))
    assert out.shape == (1, 2, 2)
