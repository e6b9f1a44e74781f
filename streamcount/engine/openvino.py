"""OpenVINO backends: fp32 (``openvino``), bf16 (``openvino-bf16``) and NNCF int8
(``openvino-int8``), the fastest CPU options for the SKT student.

The model is read from the cached ONNX export (dynamic batch and size); for each new input
shape it is reshaped to that static shape and compiled (a static shape runs 3-5 % faster than a
dynamic one), and the compiled models are kept per shape in this process (LRU,
:data:`MAX_COMPILED`). The int8 model is quantised once per model and set of calibration frames
(NNCF post-training quantisation, recipe checked against fp32 counts, see
:mod:`streamcount.engine.quantize`) and cached as OpenVINO IR.

``ENABLE_CPU_PINNING`` is off: with one process per stream, pinned single-thread processes all
land on the same core and run at half the total throughput (measured, cpu-and-io.md section 1).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
from torch import nn

from streamcount.engine import quantize
from streamcount.engine.cache import (ArtefactCache, ArtefactKey, frames_fingerprint,
                                      model_fingerprint)
from streamcount.engine.onnxruntime import default_threads, exported_onnx
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard

log = logging.getLogger(__name__)

MODEL_XML = "model.xml"
#: compiled (static-shape) models kept per backend instance
MAX_COMPILED = 8
#: backend name -> OpenVINO INFERENCE_PRECISION_HINT (None: the CPU's default)
NAMES: dict[str, str] = {"fp32": "openvino", "bf16": "openvino-bf16", "int8": "openvino-int8"}
_HINTS: dict[str, str | None] = {"fp32": "f32", "bf16": "bf16", "int8": None}


def cpu_capabilities(core: ov.Core | None = None) -> tuple[str, ...]:
    """OpenVINO's optimisation capabilities of this CPU (e.g. ``FP32``, ``BF16``, ``INT8``)."""
    core = core or ov.Core()
    return tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class _Compiled:
    """Static-shape compiled models of one ``ov.Model``, LRU by input shape."""

    def __init__(self, core: ov.Core, model: ov.Model, config: dict[str, Any],
                 limit: int = MAX_COMPILED) -> None:
        self._core = core
        self._model = model
        self._config = config
        self._limit = limit
        self._requests: OrderedDict[tuple[int, ...], ov.InferRequest] = OrderedDict()

    def request(self, shape: tuple[int, ...]) -> ov.InferRequest:
        req = self._requests.get(shape)
        if req is not None:
            self._requests.move_to_end(shape)
            return req
        model = self._model.clone()
        model.reshape({0: ov.PartialShape(list(shape))})
        compiled = self._core.compile_model(model, "CPU", self._config)
        log.debug("compiled OpenVINO model for input %s", shape)
        req = compiled.create_infer_request()
        self._requests[shape] = req
        while len(self._requests) > self._limit:
            self._requests.popitem(last=False)
        return req

    def infer(self, frames: np.ndarray) -> np.ndarray:
        req = self.request(tuple(frames.shape))
        req.infer({0: frames})
        return np.array(req.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Input shapes compiled so far (least recently used first)."""
        return tuple(self._requests)

    def property(self, name: str) -> Any:
        req = next(iter(self._requests.values()), None)
        if req is None:
            return None
        return req.get_compiled_model().get_property(name)


class OpenVINOBackend:
    """OpenVINO on the CPU in fp32, bf16 or NNCF int8.

    Args:
        net, card: the density network and its model card.
        threads: ``INFERENCE_NUM_THREADS`` (default: all cores this process may use).
        precision: ``"fp32"``, ``"bf16"`` (needs a CPU with bf16) or ``"int8"``.
        calibration_frames: uint8 ``H x W x 3`` BGR frames at the model input size (int8 only).
            Without them, int8 reuses the model's last cached calibration or raises
            :class:`~streamcount.engine.quantize.CalibrationRequired`.
        cache: the artefact cache (default: :func:`~streamcount.engine.cache.cache_root`).
        performance_hint: OpenVINO ``PERFORMANCE_HINT``; ``LATENCY`` (one stream) suits the
            synchronous ``infer`` calls of the pipeline.
    """

    def __init__(self, net: nn.Module, card: ModelCard, *, threads: int | None = None,
                 precision: str = "fp32",
                 calibration_frames: Sequence[np.ndarray] | None = None,
                 cache: ArtefactCache | None = None,
                 performance_hint: str = "LATENCY") -> None:
        if precision not in NAMES:
            raise BackendError(f"openvino precision '{precision}' is not one of "
                               f"{', '.join(NAMES)}")
        self.name = NAMES[precision]
        self.card = card
        self.precision = precision
        self.threads = threads or default_threads()
        self._cache = cache or ArtefactCache()
        self._core = ov.Core()
        self.quantization: dict[str, Any] = {}
        if precision == "bf16" and "BF16" not in cpu_capabilities(self._core):
            raise BackendError("backend 'openvino-bf16' needs a CPU with bf16 support "
                               "(AVX512_BF16 or AMX); use 'openvino'")
        self._config: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads,
                                        "ENABLE_CPU_PINNING": False,
                                        "PERFORMANCE_HINT": performance_hint}
        hint = _HINTS[precision]
        if hint is not None:
            self._config["INFERENCE_PRECISION_HINT"] = hint
        self._onnx = exported_onnx(net, card, self._cache)
        if precision == "int8":
            frames = quantize.check_calibration_frames(calibration_frames, card.input_multiple)
            model, self.artefact = self._int8(net, card, frames)
        else:
            model, self.artefact = self._core.read_model(str(self._onnx)), self._onnx
        self._compiled = _Compiled(self._core, model, self._config)

    def _float_config(self) -> dict[str, Any]:
        return self._config | {"INFERENCE_PRECISION_HINT": "f32"}

    def _int8(self, net: nn.Module, card: ModelCard,
              frames: list[np.ndarray]) -> tuple[ov.Model, Path]:
        import nncf

        key = ArtefactKey(model=model_fingerprint(net, card), backend=self.name,
                          runtime=f"openvino={ov.get_version()} nncf={nncf.__version__} "
                                  f"torch={torch.__version__}",
                          calibration=frames_fingerprint(frames) if frames else "",
                          options=quantize.recipes_key(quantize.OV_RECIPES))
        if not frames:
            remembered = self._cache.recall(key)
            if remembered is None:
                raise quantize.CalibrationRequired(
                    f"backend '{self.name}' needs calibration frames for model '{card.name}' "
                    f"(none given and none cached)")
            log.info("%s: using the int8 model calibrated earlier for '%s'", self.name, card.name)
            key = remembered

        def counts(model: ov.Model, config: dict[str, Any]) -> list[float]:
            compiled = _Compiled(self._core, model, config)
            return [float(compiled.infer(f[None]).sum()) for f in frames]

        def build(d: Path) -> None:
            source = self._core.read_model(str(self._onnx))
            reference = counts(source, self._float_config())
            chosen, trials = quantize.choose(
                quantize.OV_RECIPES,
                lambda r: quantize.quantize_openvino(source, frames, r),
                lambda m: quantize.count_deviation(reference, counts(m, self._config)))
            ov.save_model(chosen.result, str(d / MODEL_XML), compress_to_fp16=False)
            quantize.write_report(d, chosen, trials, len(frames))

        def load(d: Path) -> ov.Model:
            model = self._core.read_model(str(d / MODEL_XML))
            self.quantization = quantize.read_report(d)
            return model

        model = self._cache.load(key, build, load)
        self._cache.remember(key)
        return model, self._cache.directory(key) / MODEL_XML

    @property
    def compiled_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Input shapes with a compiled model in this process (at most :data:`MAX_COMPILED`)."""
        return self._compiled.shapes()

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Density maps ``N x H/s x W/s`` (float32) for uint8 BGR frames ``N x H x W x 3``.

        The first call with a new shape compiles the model for it (tens to hundreds of ms).
        """
        x = np.ascontiguousarray(frames, dtype=np.uint8)
        if x.ndim != 4 or x.shape[3] != 3:
            raise ValueError(f"expected uint8 N x H x W x 3 frames, got {x.shape}")
        return self._compiled.infer(x)

    def describe(self) -> dict[str, object]:
        actual = self._compiled.property("INFERENCE_PRECISION_HINT")
        d: dict[str, object] = {
            "backend": self.name, "runtime": f"openvino {ov.get_version().split('-')[0]}",
            "precision": self.precision, "threads": self.threads, "device": "cpu",
            "artefact": str(self.artefact)}
        if actual is not None:  # what the CPU plugin runs the float parts in
            d["float_precision"] = getattr(actual, "to_string", actual.__str__)()
        if self.quantization:
            d["quantization"] = {"recipe": self.quantization["recipe"]["name"],
                                 "calibration_frames": self.quantization["calibration_frames"],
                                 "calibration_deviation": round(
                                     float(self.quantization["deviation"]), 5)}
        return d
