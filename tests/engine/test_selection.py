"""GPU backend selection: preference order, reasons, and fallback instead of failure."""

from __future__ import annotations

import logging

import pytest

from streamcount.engine.cuda import CudaProbe, probe_cuda
from streamcount.engine.selection import Candidate, gpu_candidates, select_backend
from streamcount.engine.tensorrt import TensorRTProbe
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import BackendError
from tests.engine.gpu_parity_support import student

GPU = CudaProbe(True, name="NVIDIA H100 80GB HBM3", capability="9.0", torch_cuda="12.8")
NO_GPU = CudaProbe(False, "this PyTorch build (2.13.0+cpu) has no CUDA support")
TRT_OK = TensorRTProbe(True, runtime="torch_tensorrt=2.14.0 tensorrt=11.1.0")
TRT_MISSING = TensorRTProbe(False, "torch-tensorrt not installed (No module named 'x')")


class Recorder:
    """A ``create`` that fails for the names in ``broken`` and records every attempt."""

    def __init__(self, broken: dict[str, Exception] | None = None) -> None:
        self.broken = broken or {}
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, name, net, card, *, precision=None, calibration_frames=None):
        self.calls.append((name, precision))
        if name in self.broken:
            raise self.broken[name]
        return TorchBackend(net, card)  # stands in for the GPU backend (same protocol)


def _cpu(net, card):
    be = TorchBackend(net, card)
    return lambda: be


def test_candidates_in_preference_order_with_reasons() -> None:
    c = gpu_candidates(GPU, TRT_OK)
    assert [(x.name, x.usable) for x in c] == [("tensorrt", True), ("cuda", True)]
    assert "H100" in c[0].reason and "torch_tensorrt=2.14.0" in c[0].reason
    c = gpu_candidates(GPU, TRT_MISSING)
    assert [(x.name, x.usable) for x in c] == [("tensorrt", False), ("cuda", True)]
    assert "not installed" in c[0].reason
    c = gpu_candidates(NO_GPU, TRT_OK)
    assert not any(x.usable for x in c) and all("no CUDA support" in x.reason for x in c)


def test_probing_this_machine_never_raises() -> None:
    c = gpu_candidates()
    assert [x.name for x in c] == ["tensorrt", "cuda"]
    assert c[1].usable == probe_cuda().available


def test_auto_prefers_tensorrt_then_cuda(caplog) -> None:
    net, card = student()
    rec = Recorder()
    with caplog.at_level(logging.INFO, logger="streamcount.engine.selection"):
        select_backend("auto", net, card, cpu_auto=_cpu(net, card),
                       candidates=gpu_candidates(GPU, TRT_OK), create=rec)
    assert rec.calls == [("tensorrt", None)]
    assert "using backend tensorrt: NVIDIA H100" in caplog.text


def test_broken_tensorrt_falls_back_to_cuda_with_a_warning(caplog) -> None:
    net, card = student()
    rec = Recorder({"tensorrt": RuntimeError("engine build failed: out of memory\ntrace")})
    with caplog.at_level(logging.INFO, logger="streamcount.engine.selection"):
        select_backend("auto", net, card, cpu_auto=_cpu(net, card),
                       candidates=gpu_candidates(GPU, TRT_OK), create=rec)
    assert [n for n, _ in rec.calls] == ["tensorrt", "cuda"]
    warn = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warn) == 1
    assert "tensorrt could not load (engine build failed: out of memory)" in warn[0].getMessage()


def test_no_gpu_auto_uses_the_cpu_quietly(caplog) -> None:
    net, card = student()
    cpu = TorchBackend(net, card)
    rec = Recorder()
    with caplog.at_level(logging.INFO, logger="streamcount.engine.selection"):
        got = select_backend("auto", net, card, cpu_auto=lambda: cpu,
                             candidates=gpu_candidates(NO_GPU), create=rec)
    assert got is cpu and rec.calls == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "using CPU backend torch" in caplog.text and "no CUDA support" in caplog.text


def test_explicit_gpu_backend_that_cannot_load_falls_back_with_warning(caplog) -> None:
    net, card = student()
    cpu = TorchBackend(net, card)
    rec = Recorder({"cuda": BackendError("CUDA not available: no NVIDIA GPU visible")})
    with caplog.at_level(logging.INFO, logger="streamcount.engine.selection"):
        got = select_backend("cuda", net, card, cpu_auto=lambda: cpu,
                             candidates=gpu_candidates(GPU, TRT_OK), create=rec)
    assert got is cpu
    assert rec.calls == [("cuda", None)]  # an explicit cuda never tries tensorrt
    assert any(r.levelno == logging.WARNING and "using CPU backend" in r.getMessage()
               for r in caplog.records)


def test_requested_precision_is_kept_where_supported() -> None:
    net, card = student()
    rec = Recorder({"tensorrt": BackendError("TensorRT int8 needs NVIDIA ModelOpt")})
    select_backend("tensorrt", net, card, cpu_auto=_cpu(net, card), precision="int8",
                   candidates=gpu_candidates(GPU, TRT_OK), create=rec)
    assert rec.calls == [("tensorrt", "int8"), ("cuda", None)]  # cuda has no int8


def test_unknown_name_is_a_backend_error() -> None:
    net, card = student()
    with pytest.raises(BackendError, match="'openvino' is not a GPU backend"):
        select_backend("openvino", net, card, cpu_auto=_cpu(net, card))


def test_real_construction_on_this_machine_falls_back() -> None:
    """With the real constructors: on a machine without CUDA, cuda -> CPU, no exception."""
    if probe_cuda().available:
        pytest.skip("a CUDA GPU is present")
    net, card = student()
    cpu = TorchBackend(net, card)
    assert select_backend("cuda", net, card, cpu_auto=lambda: cpu,
                          candidates=[Candidate("cuda", True, "forced")]) is cpu
