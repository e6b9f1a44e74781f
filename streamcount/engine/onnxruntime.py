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

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from streamcount.engine import quantize
from streamcount.engine.cache import (ArtefactCache, ArtefactKey, frames_fingerprint,
                                      model_fingerprint, package_version)
from streamcount.engine.onnx_export import (DIGEST_FILE, EXPORTER, MODEL_FILE,  # noqa: F401
                                            default_threads, exported_onnx)
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard
from streamcount.models.lazy import LazyNet

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")


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
        calibration_policy: ``frames`` (default: calibrate on the frames and make that the
            model's calibration), ``model`` (reuse the model's cached calibration; the frames
            calibrate only when there is none) or ``clip`` (calibrate on the frames for this
            input only); see :func:`~streamcount.engine.quantize.calibration_key`.
        calibration_source: where the frames come from, recorded with the int8 model.
        cache: the artefact cache (default: :func:`~streamcount.engine.cache.cache_root`).
    """

    def __init__(self, net: nn.Module | LazyNet, card: ModelCard, *, threads: int | None = None,
                 precision: str = "fp32",
                 calibration_frames: Sequence[np.ndarray] | None = None,
                 calibration_policy: str = "frames",
                 calibration_source: str | None = None,
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
        self.calibration_reused = False
        self._policy = calibration_policy
        self._source = calibration_source
        fp32 = exported_onnx(net, card, self._cache)
        if precision == "fp32":
            self.artefact = fp32
        else:
            frames = quantize.check_calibration_frames(calibration_frames, card.input_multiple)
            self.artefact = self._int8(net, card, fp32, frames)
        self._session = _session(self.artefact, self.threads)
        self._input = self._session.get_inputs()[0].name

    def _int8(self, net: nn.Module | LazyNet, card: ModelCard, fp32: Path,
              frames: list[np.ndarray]) -> Path:
        key = ArtefactKey(model=model_fingerprint(net, card), backend=self.name,
                          runtime=f"onnxruntime={ort.__version__} "
                                  f"torch={package_version('torch')}",
                          calibration=frames_fingerprint(frames) if frames else "",
                          options=quantize.recipes_key(quantize.ORT_RECIPES))
        key, self.calibration_reused, remember = quantize.calibration_key(
            self._cache, key, frames, self._policy, self.name, card.name)

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
            quantize.write_report(d, chosen, trials, len(frames), self._source)

        def load(d: Path) -> Path:
            _session(d / MODEL_FILE, 1)  # fails on a corrupt file -> rebuilt
            self.quantization = quantize.read_report(d)
            return d / MODEL_FILE

        path = self._cache.load(key, build, load)
        if remember:
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
            d["quantization"] = quantize.describe_report(self.quantization,
                                                         self.calibration_reused)
        return d
