"""ONNX Runtime backends: fp32 (``onnx``) and static int8 QOperator (``onnx-int8``).

Both run the exported deploy graph (uint8 BGR ``N x H x W x 3`` in, float32 density out, batch
and size dynamic), so frames go in without any numpy preprocessing. The fp32 ONNX file is
exported once per model and cached (:func:`exported_onnx`; the OpenVINO backends read it too);
the int8 model is calibrated once per model and set of calibration frames and cached.

Measured with ``benchmarks/backends.py`` (1/4-CSRNet, 960x536, batch 1, 2 threads, on the
shared 2-core development machine at load average 5): fp32 1.2x and int8 2.3x the speed of
eager fp32 PyTorch (OpenVINO int8: 4.3x); int8 counts within 0.9 % of fp32.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from streamcount.engine import quantize
from streamcount.engine.cache import (ArtefactCache, ArtefactKey, frames_fingerprint,
                                      model_fingerprint)
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
PRECISIONS = ("fp32", "int8")
#: exporter and opset of the cached fp32 ONNX (part of its cache key)
EXPORTER = "dynamo"


def default_threads() -> int:
    """Threads for one inference call: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _export(net: nn.Module, card: ModelCard, out: Path) -> None:
    """Export ``CountingNet(net, card)`` to ``out`` with :func:`streamcount.models.export
    .export_onnx` (which takes a weight file, so the weights pass through a temporary one)."""
    from streamcount.models.export import export_onnx
    from streamcount.models.weights import save_model

    with tempfile.TemporaryDirectory(prefix="streamcount-export-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        weights = Path(tmp) / "model.safetensors"
        save_model(weights, net, card)
        export_onnx(weights, out, exporter=EXPORTER)


def exported_onnx(net: nn.Module, card: ModelCard, cache: ArtefactCache | None = None) -> Path:
    """The fp32 ONNX file of the deploy graph, exported once per model and cached."""
    import onnx

    cache = cache or ArtefactCache()
    key = ArtefactKey(model=model_fingerprint(net, card), backend="onnx-export",
                      runtime=f"torch={torch.__version__} onnx={onnx.__version__}",
                      options=EXPORTER)

    def load(d: Path) -> Path:
        onnx.checker.check_model(str(d / MODEL_FILE))
        return d / MODEL_FILE

    return cache.load(key, lambda d: _export(net, card, d / MODEL_FILE), load)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _counts(session: ort.InferenceSession, frames: Sequence[np.ndarray]) -> list[float]:
    name = session.get_inputs()[0].name
    return [float(session.run(None, {name: f[None]})[0].sum()) for f in frames]


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU, fp32 or static int8 (calibrated, cached).

    Args:
        net, card: the density network and its model card.
        threads: intra-op threads (default: all cores this process may use).
        precision: ``"fp32"`` or ``"int8"``.
        calibration_frames: uint8 ``H x W x 3`` BGR frames at the model input size (int8 only;
            about 8-32 real frames of the scene). Without them, int8 reuses the model's last
            cached calibration or raises :class:`~streamcount.engine.quantize.CalibrationRequired`.
        cache: the artefact cache (default: :func:`~streamcount.engine.cache.cache_root`).
    """

    def __init__(self, net: nn.Module, card: ModelCard, *, threads: int | None = None,
                 precision: str = "fp32",
                 calibration_frames: Sequence[np.ndarray] | None = None,
                 cache: ArtefactCache | None = None) -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"onnxruntime precision '{precision}' is not one of "
                               f"{', '.join(PRECISIONS)}")
        self.name = "onnx" if precision == "fp32" else "onnx-int8"
        self.card = card
        self.precision = precision
        self.threads = threads or default_threads()
        self._cache = cache or ArtefactCache()
        self.quantization: dict[str, object] = {}
        fp32 = exported_onnx(net, card, self._cache)
        if precision == "fp32":
            self.artefact = fp32
        else:
            frames = quantize.check_calibration_frames(calibration_frames, card.input_multiple)
            self.artefact = self._int8(net, card, fp32, frames)
        self._session = _session(self.artefact, self.threads)
        self._input = self._session.get_inputs()[0].name

    def _int8(self, net: nn.Module, card: ModelCard, fp32: Path,
              frames: list[np.ndarray]) -> Path:
        key = ArtefactKey(model=model_fingerprint(net, card), backend=self.name,
                          runtime=f"onnxruntime={ort.__version__} torch={torch.__version__}",
                          calibration=frames_fingerprint(frames) if frames else "",
                          options=quantize.recipes_key(quantize.ORT_RECIPES))
        if not frames:
            remembered = self._cache.recall(key)
            if remembered is None:
                raise quantize.CalibrationRequired(
                    f"backend '{self.name}' needs calibration frames for model '{card.name}' "
                    f"(none given and none cached)")
            log.info("%s: using the int8 model calibrated earlier for '%s'", self.name, card.name)
            key = remembered

        def build(d: Path) -> None:
            reference = _counts(_session(fp32, self.threads), frames)
            quantizer = quantize.OnnxQuantizer(fp32, d, frames, self._input_name(fp32))

            def deviation(path: Path) -> float:
                return quantize.count_deviation(reference, _counts(_session(path, self.threads),
                                                                   frames))

            chosen, trials = quantize.choose(
                quantize.ORT_RECIPES,
                lambda r: quantizer(r, d / f"candidate-{quantize.ORT_RECIPES.index(r)}.onnx"),
                deviation)
            chosen.result.rename(d / MODEL_FILE)
            for t in trials:
                t.result.unlink(missing_ok=True)
            quantizer.cleanup()
            quantize.write_report(d, chosen, trials, len(frames))

        def load(d: Path) -> Path:
            _session(d / MODEL_FILE, 1)  # fails on a corrupt file -> rebuilt
            self.quantization = quantize.read_report(d)
            return d / MODEL_FILE

        path = self._cache.load(key, build, load)
        self._cache.remember(key)
        return path

    @staticmethod
    def _input_name(path: Path) -> str:
        import onnx

        return onnx.load(str(path), load_external_data=False).graph.input[0].name

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Density maps ``N x H/s x W/s`` (float32) for uint8 BGR frames ``N x H x W x 3``."""
        x = np.ascontiguousarray(frames, dtype=np.uint8)
        if x.ndim != 4 or x.shape[3] != 3:
            raise ValueError(f"expected uint8 N x H x W x 3 frames, got {x.shape}")
        return self._session.run(None, {self._input: x})[0]

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {"backend": self.name, "runtime": f"onnxruntime {ort.__version__}",
                                "precision": self.precision, "threads": self.threads,
                                "device": "cpu", "artefact": str(self.artefact)}
        if self.quantization:
            d["quantization"] = {"recipe": self.quantization["recipe"]["name"],
                                 "calibration_frames": self.quantization["calibration_frames"],
                                 "calibration_deviation": round(
                                     float(self.quantization["deviation"]), 5)}
        return d
