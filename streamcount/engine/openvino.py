"""OpenVINO backends: fp32 (``openvino``), bf16 (``openvino-bf16``) and NNCF int8
(``openvino-int8``), the fastest CPU options for the SKT student.

The model is read from the cached ONNX export (dynamic batch and size); for each new input
shape it is reshaped to that static shape and compiled (a static shape runs 3-5 % faster than a
dynamic one), and the compiled models are kept per shape in this process (LRU,
:data:`MAX_COMPILED`). The int8 model is quantised once per model and set of calibration frames
(NNCF post-training quantisation, recipe checked against fp32 counts, see
:mod:`streamcount.engine.quantize`) and cached as OpenVINO IR.

Compiled models are also kept on disk by OpenVINO itself (``CACHE_DIR`` =
``<cache root>/openvino-compiled``, keyed by model, shape and configuration): a later process
imports the compiled blob instead of compiling (0.1-0.2 s saved per shape; a one-image count
went from 1.31 to 1.14 s here). The directory grows by about 1-2 MB per new input shape; delete
it to reclaim the space.

``ENABLE_CPU_PINNING`` is off: with one process per stream, pinned single-thread processes all
land on the same core and run at half the total throughput (measured, cpu-and-io.md section 1).

Two performance hints: ``LATENCY`` (default; one stream, a batch is one request using every
thread: the live service's small batches) and ``THROUGHPUT`` (``streamcount count``: the
model is compiled for one frame with several CPU streams, and a batch is split into one
request per frame, all in flight at once through an ``AsyncInferQueue``). Measured on the
2-core machine with the default model in int8 at 440x328: 11.2 ms per frame as a LATENCY
batch of 4, 5.7 ms with THROUGHPUT single-frame requests (2 streams); the person detector
(fp32, 416x416): 4.6 vs 3.2 ms.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np
import openvino as ov

from streamcount import startup
from streamcount.engine import quantize
from streamcount.engine.cache import (ArtefactCache, ArtefactKey, frames_fingerprint,
                                      model_fingerprint, package_version)
from streamcount.engine.onnx_export import default_threads, exported_onnx
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard

if TYPE_CHECKING:
    from torch import nn

    from streamcount.models.lazy import LazyNet

log = logging.getLogger(__name__)

MODEL_XML = "model.xml"
#: OpenVINO's own cache of compiled models (per model, shape and config), under the cache root
COMPILED_DIR = "openvino-compiled"
#: compiled (static-shape) models kept per backend instance
MAX_COMPILED = 8
#: backend name -> OpenVINO INFERENCE_PRECISION_HINT (None: the CPU's default)
NAMES: dict[str, str] = {"fp32": "openvino", "bf16": "openvino-bf16", "int8": "openvino-int8"}
_HINTS: dict[str, str | None] = {"fp32": "f32", "bf16": "bf16", "int8": None}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")


def cpu_capabilities(core: ov.Core | None = None) -> tuple[str, ...]:
    """OpenVINO's optimisation capabilities of this CPU (e.g. ``FP32``, ``BF16``, ``INT8``)."""
    core = core or ov.Core()
    return tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class _Compiled:
    """Static-shape compiled models of one ``ov.Model``, LRU by input shape.

    With ``per_frame`` (the THROUGHPUT hint) the model is compiled for single frames and a
    batch runs as one request per frame, all in flight at once.
    """

    def __init__(self, core: ov.Core, model: ov.Model, config: dict[str, Any],
                 limit: int = MAX_COMPILED, per_frame: bool = False) -> None:
        self._core = core
        self._model = model
        self._config = config
        self._limit = limit
        self._per_frame = per_frame
        self._requests: OrderedDict[tuple[int, ...], ov.InferRequest] = OrderedDict()
        self._queues: dict[tuple[int, ...], ov.AsyncInferQueue] = {}

    def request(self, shape: tuple[int, ...]) -> ov.InferRequest:
        req = self._requests.get(shape)
        if req is not None:
            self._requests.move_to_end(shape)
            return req
        t0 = time.perf_counter()
        model = self._model.clone()
        model.reshape({0: ov.PartialShape(list(shape))})
        compiled = self._core.compile_model(model, "CPU", self._config)
        seconds = time.perf_counter() - t0
        startup.note("backend compile", seconds)
        log.debug("compiled OpenVINO model for input %s in %.3f s", shape, seconds)
        req = compiled.create_infer_request()
        self._requests[shape] = req
        if self._per_frame:
            n = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._queues[shape] = ov.AsyncInferQueue(compiled, max(2, n))
        while len(self._requests) > self._limit:
            old, _ = self._requests.popitem(last=False)
            self._queues.pop(old, None)
        return req

    def infer(self, frames: np.ndarray) -> np.ndarray:
        if self._per_frame and frames.shape[0] > 1:
            return self._infer_per_frame(frames)
        req = self.request(tuple(frames.shape))
        req.infer({0: frames})
        return np.array(req.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _infer_per_frame(self, frames: np.ndarray) -> np.ndarray:
        shape = (1, *frames.shape[1:])
        self.request(shape)
        queue = self._queues[shape]
        out: list[np.ndarray | None] = [None] * frames.shape[0]

        def done(req: ov.InferRequest, i: int) -> None:
            out[i] = np.array(req.get_output_tensor(0).data, dtype=np.float32, copy=True)

        queue.set_callback(done)
        for i in range(frames.shape[0]):
            queue.start_async({0: frames[i:i + 1]}, i)
        queue.wait_all()
        return np.concatenate(out)  # type: ignore[arg-type]

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
        calibration_policy: ``frames`` (default: calibrate on the frames and make that the
            model's calibration), ``model`` (reuse the model's cached calibration; the frames
            calibrate only when there is none) or ``clip`` (calibrate on the frames for this
            input only); see :func:`~streamcount.engine.quantize.calibration_key`.
        calibration_source: where the frames come from, recorded with the int8 model.
        cache: the artefact cache (default: :func:`~streamcount.engine.cache.cache_root`).
        performance_hint: OpenVINO ``PERFORMANCE_HINT``: ``LATENCY`` (one stream, a batch is
            one request) or ``THROUGHPUT`` (several streams, one request per frame of a batch,
            all in flight; see the module docstring).
    """

    def __init__(self, net: nn.Module | LazyNet, card: ModelCard, *,
                 threads: int | None = None, precision: str = "fp32",
                 calibration_frames: Sequence[np.ndarray] | None = None,
                 calibration_policy: str = "frames",
                 calibration_source: str | None = None,
                 cache: ArtefactCache | None = None,
                 performance_hint: str = "LATENCY") -> None:
        if precision not in NAMES:
            raise BackendError(f"openvino precision '{precision}' is not one of "
                               f"{', '.join(NAMES)}")
        if performance_hint not in PERFORMANCE_HINTS:
            raise BackendError(f"openvino performance hint '{performance_hint}' is not one of "
                               f"{', '.join(PERFORMANCE_HINTS)}")
        self.name = NAMES[precision]
        self.card = card
        self.precision = precision
        self.threads = threads or default_threads()
        self._cache = cache or ArtefactCache()
        self._core = ov.Core()
        self._core.set_property({"CACHE_DIR": str(self._cache.root / COMPILED_DIR)})
        self.quantization: dict[str, Any] = {}
        self.calibration_reused = False
        self.performance_hint = performance_hint
        self._policy = calibration_policy
        self._source = calibration_source
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
        self._compiled = _Compiled(self._core, model, self._config,
                                   per_frame=performance_hint == "THROUGHPUT")

    def _float_config(self) -> dict[str, Any]:
        return self._config | {"INFERENCE_PRECISION_HINT": "f32"}

    def _int8(self, net: nn.Module | LazyNet, card: ModelCard,
              frames: list[np.ndarray]) -> tuple[ov.Model, Path]:
        key = ArtefactKey(model=model_fingerprint(net, card), backend=self.name,
                          runtime=f"openvino={ov.get_version()} nncf={package_version('nncf')} "
                                  f"torch={package_version('torch')}",
                          calibration=frames_fingerprint(frames) if frames else "",
                          options=quantize.recipes_key(quantize.OV_RECIPES))
        key, self.calibration_reused, remember = quantize.calibration_key(
            self._cache, key, frames, self._policy, self.name, card.name)

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
            quantize.write_report(d, chosen, trials, len(frames), self._source)

        def load(d: Path) -> ov.Model:
            model = self._core.read_model(str(d / MODEL_XML))
            self.quantization = quantize.read_report(d)
            return model

        model = self._cache.load(key, build, load)
        if remember:
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
            "performance_hint": self.performance_hint, "artefact": str(self.artefact)}
        if actual is not None:  # what the CPU plugin runs the float parts in
            d["float_precision"] = getattr(actual, "to_string", actual.__str__)()
        if self.quantization:
            d["quantization"] = quantize.describe_report(self.quantization,
                                                         self.calibration_reused)
        return d
