"""Backend factory: backend names -> constructors, ``auto`` selection and graceful fallback.

Adding a backend is one entry in :data:`BACKENDS`, e.g.
``"cuda": BackendSpec("streamcount.engine.cuda:CudaBackend", requires=("torch",),
threads=False, options={"precision": "fp16"})``; its module is imported only when it is used.

``auto`` takes the first backend of :data:`AUTO_PREFERENCE` that is installed and loads here.
The order is the measured speed of the 1/4-CSRNet student on the 2-core development machine
(cpu-and-io.md section 1 and ``benchmarks/backends.py``): OpenVINO int8 > ONNX Runtime int8 >
OpenVINO bf16 > OpenVINO fp32 ~ ONNX Runtime fp32 > eager PyTorch. The int8 backends take part
only with calibration frames (or a calibration cached by an earlier run) and bf16 only on a CPU
that has it.

Failures: an unknown name or a runtime that is not installed raises :class:`BackendError` (one
line). A backend that fails to load for any other reason (export, quantisation or compilation
error) falls back to the fp32 torch backend with a logged warning instead of stopping the
program; an int8 backend without calibration frames falls back to its float sibling.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamcount.engine.base import Backend
from streamcount.engine.quantize import CalibrationRequired
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard
from streamcount.models.lazy import LazyNet, load_lazy
from streamcount.models.weights import resolve_model

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

AUTO = "auto"
FALLBACK = "torch"


@dataclass(frozen=True)
class BackendSpec:
    """How to construct one backend.

    ``target`` (``"module:Class"``) is called as ``Class(net, card, threads=..., **options)``,
    plus ``calibration_frames=...`` (and the calibration policy and source) when
    ``calibrated``, and ``performance_hint="THROUGHPUT"`` when asked for throughput and
    ``hints``; ``threads=False`` leaves the threads argument out (GPU backends).
    """

    target: str
    requires: tuple[str, ...] = ()  # top-level modules the runtime needs
    options: Mapping[str, Any] = field(default_factory=dict)
    threads: bool = True
    calibrated: bool = False  # int8: takes calibration frames
    uncalibrated: tuple[str, ...] = ()  # tried in order when there are no calibration frames
    summary: str = ""
    hints: bool = False  # takes OpenVINO's performance_hint (LATENCY / THROUGHPUT)

    def missing(self) -> list[str]:
        """The required modules that are not installed."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def build(self, net: nn.Module | LazyNet, card: ModelCard, *, threads: int | None,
              calibration_frames: Sequence[np.ndarray],
              settings: BuildSettings | None = None) -> Backend:
        """Import the backend's module and construct it."""
        settings = settings or BuildSettings()
        module, _, cls = self.target.partition(":")
        factory = getattr(importlib.import_module(module), cls)
        kwargs: dict[str, Any] = dict(self.options)
        if self.threads:
            kwargs["threads"] = threads
        if self.calibrated:
            kwargs["calibration_frames"] = calibration_frames
            kwargs["calibration_policy"] = settings.calibration
            kwargs["calibration_source"] = settings.calibration_source
        if self.hints and settings.throughput:
            kwargs["performance_hint"] = "THROUGHPUT"
        return factory(net, card, **kwargs)


@dataclass(frozen=True)
class BuildSettings:
    """How backends are built beyond the model and threads.

    ``throughput``: several inferences in flight (OpenVINO THROUGHPUT hint; offline counting)
    rather than the lowest latency of one call (the live service). ``calibration``: int8
    calibration policy (``frames``, ``model`` or ``clip``; see
    :func:`~streamcount.engine.quantize.calibration_key`); ``calibration_source`` describes the
    frames for the record.
    """

    throughput: bool = False
    calibration: str = "frames"
    calibration_source: str | None = None


_ORT = "streamcount.engine.onnxruntime:OnnxRuntimeBackend"
_OV = "streamcount.engine.openvino:OpenVINOBackend"

#: backend name -> how to build it (``auto`` is handled by :func:`create_backend`)
BACKENDS: dict[str, BackendSpec] = {
    "torch": BackendSpec("streamcount.engine.torch_cpu:TorchBackend", ("torch",),
                         summary="PyTorch eager fp32, the reference"),
    "onnx": BackendSpec(_ORT, ("onnxruntime", "onnx", "onnxscript"), {"precision": "fp32"},
                        summary="ONNX Runtime fp32"),
    "onnx-int8": BackendSpec(_ORT, ("onnxruntime", "onnx", "onnxscript"), {"precision": "int8"},
                             calibrated=True, uncalibrated=("onnx",),
                             summary="ONNX Runtime static int8 (QLinearConv), calibrated"),
    "openvino": BackendSpec(_OV, ("openvino", "onnx", "onnxscript"), {"precision": "fp32"},
                            summary="OpenVINO fp32", hints=True),
    "openvino-bf16": BackendSpec(_OV, ("openvino", "onnx", "onnxscript"), {"precision": "bf16"},
                                 summary="OpenVINO bf16 (CPUs with AVX512_BF16/AMX)",
                                 hints=True),
    "openvino-int8": BackendSpec(_OV, ("openvino", "nncf", "onnx", "onnxscript"),
                                 {"precision": "int8"}, calibrated=True,
                                 uncalibrated=("openvino-bf16", "openvino"),
                                 summary="OpenVINO int8 (NNCF post-training), calibrated",
                                 hints=True),
    "cuda": BackendSpec("streamcount.engine.cuda:CudaBackend", ("torch",), {"precision": "fp16"},
                        threads=False, summary="PyTorch on an NVIDIA GPU, fp16, CUDA graphs"),
    "tensorrt": BackendSpec("streamcount.engine.tensorrt:TensorRTBackend", ("torch_tensorrt",),
                            {"precision": "fp16"}, threads=False,
                            summary="TensorRT engines via torch-tensorrt, fp16 (unverified)"),
}

#: the order ``auto`` tries CPU backends in: fastest first (measured, see module docstring)
AUTO_PREFERENCE: tuple[str, ...] = ("openvino-int8", "onnx-int8", "openvino-bf16", "openvino",
                                    "onnx", "torch")


def backend_names() -> tuple[str, ...]:
    """Every name :func:`create_backend` accepts."""
    return (*BACKENDS, AUTO)


ModelRef = str | Path | tuple["nn.Module | LazyNet", ModelCard] | None


def _load(model: ModelRef) -> tuple[nn.Module | LazyNet, ModelCard]:
    """The network and card of ``model``; a file is loaded lazily (card now, tensors when an
    artefact has to be built or the torch backend runs)."""
    if isinstance(model, tuple):
        return model
    return load_lazy(resolve_model(None if model is None else str(model)))


def create_backend(name: str, model: ModelRef = None, *, threads: int | None = None,
                   calibration_frames: Sequence[np.ndarray] | None = None,
                   settings: BuildSettings | None = None) -> Backend:
    """Construct backend ``name`` for ``model``.

    Args:
        name: a key of :data:`BACKENDS` or ``"auto"`` (the fastest that loads here).
        model: ``--model`` reference (file, name or architecture; None = the default model),
            or an already loaded ``(net, card)``.
        threads: inference threads (default: all cores this process may use).
        calibration_frames: uint8 ``H x W x 3`` BGR frames at the model input size, for the
            int8 backends (8-32 real frames of the scene).
        settings: throughput mode and int8 calibration policy (:class:`BuildSettings`).

    Raises:
        BackendError: unknown name, or the backend's runtime is not installed.
        ModelError: the model cannot be found or loaded.
    """
    if name != AUTO and name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(backend_names())})")
    net, card = _load(model)
    frames = list(calibration_frames or ())
    settings = settings or BuildSettings()
    if name == AUTO:
        return _auto(net, card, threads, frames, settings)
    spec = BACKENDS[name]
    missing = spec.missing()
    if missing:
        raise BackendError(f"backend '{name}' is not available: {', '.join(missing)} "
                           f"not installed")
    _check_task(name, spec, card)
    try:
        return spec.build(net, card, threads=threads, calibration_frames=frames,
                          settings=settings)
    except CalibrationRequired as e:
        if not spec.uncalibrated:
            raise
        return _first_loading(spec.uncalibrated, net, card, threads, [],
                              why=f"{e}; using a float backend instead", settings=settings)
    except BackendError:
        raise
    except Exception as e:  # noqa: BLE001 - a backend that cannot load must not stop the run
        if name == FALLBACK:
            raise
        log.warning("backend '%s' failed to load (%s); falling back to '%s'", name,
                    _first_line(e), FALLBACK)
        return BACKENDS[FALLBACK].build(net, card, threads=threads, calibration_frames=frames)


def _auto(net: nn.Module | LazyNet, card: ModelCard, threads: int | None,
          frames: list[np.ndarray], settings: BuildSettings) -> Backend:
    from streamcount.engine.selection import select_backend  # tensorrt > cuda > the CPU order

    return select_backend(AUTO, net, card, calibration_frames=frames, cpu_auto=lambda: (
        _first_loading(AUTO_PREFERENCE, net, card, threads, frames,
                       why="auto: the fastest backend that loads here", settings=settings)))


def _first_loading(names: Sequence[str], net: nn.Module | LazyNet, card: ModelCard,
                   threads: int | None, frames: list[np.ndarray], why: str,
                   settings: BuildSettings | None = None) -> Backend:
    """The first of ``names`` that is installed and loads; logs ``why`` and what was skipped."""
    skipped: list[str] = []
    for name in names:
        spec = BACKENDS[name]
        missing = spec.missing()
        if missing:
            skipped.append(f"{name}: {', '.join(missing)} not installed")
            continue
        if spec.calibrated and card.task != "density":
            skipped.append(f"{name}: no int8 parity check for {card.task} models")
            continue
        try:
            backend = spec.build(net, card, threads=threads, calibration_frames=frames,
                                 settings=settings)
        except CalibrationRequired:
            skipped.append(f"{name}: no calibration frames")
            continue
        except Exception as e:  # noqa: BLE001 - try the next one
            level = logging.INFO if isinstance(e, BackendError) else logging.WARNING
            log.log(level, "backend '%s' could not load (%s)", name, _first_line(e))
            skipped.append(f"{name}: {_first_line(e)}")
            continue
        log.log(logging.INFO if names is AUTO_PREFERENCE else logging.WARNING,
                "%s: using backend '%s' (%s)%s", why, name, spec.summary,
                f"; skipped {'; '.join(skipped)}" if skipped else "")
        return backend
    raise BackendError("no inference backend could be loaded: " + "; ".join(skipped))


def _check_task(name: str, spec: BackendSpec, card: ModelCard) -> None:
    """int8 recipes are chosen and accepted by comparing density sums with fp32, which says
    nothing about a detector's boxes: refuse rather than run an unchecked int8 detector."""
    if spec.calibrated and card.task != "density":
        raise BackendError(f"backend '{name}' is not available for '{card.name}': int8 is "
                           f"checked against fp32 density counts only, and this is a "
                           f"{card.task} model (use a float backend)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
