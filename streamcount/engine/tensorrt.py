"""TensorRT backend: the deploy graph compiled with torch-tensorrt (dynamo IR).

.. warning:: **Unverified.** torch-tensorrt cannot be installed on the project's development and
   CI machines (CPU only; it pins its own torch release and needs NVIDIA-index TensorRT
   libraries), and the lent GPU machine has no torch-tensorrt either. The code below follows
   torch-tensorrt's documented 2.x API (``torch_tensorrt.compile(module, ir="dynamo",
   inputs=[torch_tensorrt.Input(min_shape, opt_shape, max_shape, dtype)])``,
   ``torch_tensorrt.save(..., output_format="exported_program" | "torchscript")`` /
   ``torch_tensorrt.load``; INT8 through NVIDIA ModelOpt: ``mtq.quantize(model,
   mtq.INT8_DEFAULT_CFG, forward_loop)`` inserting Q/DQ nodes, then compiling under
   ``modelopt.torch.quantization.utils.export_torch_mode()`` - the TorchScript-era
   ``torch_tensorrt.ptq`` calibrators are gone from the dynamo path). Only the parts that do
   not execute TensorRT (settings, keys, buckets, batch padding, error paths) are tested here;
   the GPU tests skip with "torch-tensorrt not installed" until a machine has it.

Design: one engine per *input size bucket* (the planned model input size, e.g. 544x960 for
1080p sources), with a dynamic batch range ``(min, opt, max)``. Engines are cached on disk by
:class:`~streamcount.engine.engine_cache.EngineCache`, keyed by the model fingerprint, size,
batch range, precision, GPU and runtime versions. Frames travel exactly as in
:class:`~streamcount.engine.cuda.CudaBackend` (pinned upload of ``uint8``, resize on the GPU);
the engine takes float32 ``N x H x W x 3`` (0-255 BGR) and contains the colour/mean/std map.

Precision: fp16 is made *explicit in the graph* (:class:`~streamcount.engine.cuda.HalfNet`
casts after the fp32 colour map), which is what strongly-typed TensorRT (the default in recent
torch-tensorrt) honours; on older, weakly-typed versions ``enabled_precisions`` is passed as
well. Settings the installed version does not know are left out
(:func:`compile_settings`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from streamcount.engine.cache import frames_fingerprint, model_fingerprint
from streamcount.engine.cuda import CudaBackend, build_device_model
from streamcount.engine.engine_cache import FORMAT_SUFFIX, EngineCache, EngineKey
from streamcount.engine.gpu_preprocess import resize_frames
from streamcount.engine.preprocess import plan_input_size
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard

log = logging.getLogger(__name__)

#: precisions a TensorRT engine can be built in
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
#: default dynamic batch range (min, opt, max)
DEFAULT_BATCH: tuple[int, int, int] = (1, 4, 16)
#: calibration frames used for int8 at most (ModelOpt suggests 128-512 samples; frames of one
#: scene are highly redundant)
MAX_CALIBRATION_FRAMES = 64


@dataclass(frozen=True)
class TensorRTProbe:
    """Whether torch-tensorrt imports here, and the versions that key its engines."""

    available: bool
    reason: str = ""
    runtime: str = ""  # "torch_tensorrt=X tensorrt=Y torch=Z cuda=W"


def _import_torch_tensorrt() -> ModuleType:
    """``import torch_tensorrt``, or :class:`BackendError` saying why not.

    Its import raises plain ``Exception`` (not ``ImportError``) when the TensorRT libraries are
    missing, so everything is caught.
    """
    try:
        import torch_tensorrt
    except ImportError as e:
        raise BackendError(f"torch-tensorrt not installed ({e}); install the 'tensorrt' extra "
                           "on a machine with an NVIDIA GPU") from None
    except Exception as e:  # noqa: BLE001 - e.g. "Could not find libnvinfer.so.11"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f"torch-tensorrt does not load ({first})") from None
    return torch_tensorrt


def runtime_versions(trt: ModuleType) -> str:
    """The versions an engine depends on, as one string for :class:`EngineKey`."""
    parts = [f"torch_tensorrt={getattr(trt, '__version__', '?')}"]
    try:
        import tensorrt

        parts.append(f"tensorrt={tensorrt.__version__}")
    except Exception:  # noqa: BLE001 - version only
        parts.append("tensorrt=?")
    parts += [f"torch={torch.__version__}", f"cuda={torch.version.cuda}"]
    return " ".join(parts)


def probe_tensorrt() -> TensorRTProbe:
    """Check whether torch-tensorrt can be used, without raising."""
    try:
        trt = _import_torch_tensorrt()
    except BackendError as e:
        return TensorRTProbe(False, str(e))
    return TensorRTProbe(True, "", runtime_versions(trt))


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"MIN:OPT:MAX"`` (or ``"N"`` for a fixed batch) -> ``(min, opt, max)``."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise ValueError(f"batch range {text!r} is not MIN:OPT:MAX integers") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise ValueError(f"batch range {text!r} must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return parts[0], parts[1], parts[2]


def plan_buckets(frame_sizes: Iterable[tuple[int, int]], max_side: int | None,
                 multiple: int) -> list[tuple[int, int]]:
    """The distinct model input sizes (engine buckets) for sources of the given frame sizes."""
    return sorted({plan_input_size(h, w, max_side, multiple) for h, w in frame_sizes})


def compile_settings(known: set[str], precision: str) -> dict[str, Any]:
    """Keyword settings for ``torch_tensorrt.compile``, limited to the ``known`` names of the
    installed version's ``CompilationSettings``.

    The graph carries its own types (fp16 casts, int8 Q/DQ nodes), so strong typing is asked for
    where the option exists; only weakly-typed versions get ``enabled_precisions``.
    """
    if precision not in PRECISIONS:
        raise BackendError(f"precision '{precision}' not supported by TensorRT here (choose from "
                           f"{', '.join(PRECISIONS)})")
    s: dict[str, Any] = {"min_block_size": 1}
    if "use_explicit_typing" in known:
        s["use_explicit_typing"] = True
    elif "enabled_precisions" in known:
        s["enabled_precisions"] = {"fp32": {torch.float32},
                                   "fp16": {torch.float16, torch.float32},
                                   "int8": {torch.int8, torch.float16, torch.float32}}[precision]
    return {k: v for k, v in s.items() if k in known}


def _settings_fields(trt: ModuleType) -> set[str]:
    try:
        from torch_tensorrt.dynamo import CompilationSettings

        return {f.name for f in dataclasses.fields(CompilationSettings)}
    except Exception:  # noqa: BLE001 - very old or very new layout: keep to the basics
        return {"min_block_size"}


def input_spec_shapes(size: tuple[int, int], batch: tuple[int, int, int]
                      ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) NHWC input shapes of an engine for ``size`` and ``batch``."""
    h, w = size
    return tuple((b, h, w, 3) for b in batch)  # type: ignore[return-value]


class TensorRTBackend(CudaBackend):
    """Engines built (or loaded from the cache) per input-size bucket; see the module docstring.

    Args:
        sizes: input sizes (height, width) to prepare engines for at construction. Others are
            built on first use when ``build_on_demand`` (a build takes minutes), else refused.
        batch: dynamic batch range (min, opt, max); larger batches are split, smaller padded.
        calibration_frames: ``uint8`` BGR frames (any size) for int8 calibration.
        fmt: engine file format, ``exported_program`` (default) or ``torchscript``.
    """

    name = "tensorrt"

    def __init__(self, net: nn.Module, card: ModelCard, *, precision: str = "fp16",
                 device: str = "cuda", sizes: Sequence[tuple[int, int]] = (),
                 batch: tuple[int, int, int] = DEFAULT_BATCH,
                 calibration_frames: Sequence[np.ndarray] | None = None,
                 cache: EngineCache | None = None, fmt: str = "exported_program",
                 build_on_demand: bool = True, resize_mode: str = "area") -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"precision '{precision}' not supported by TensorRT (choose from "
                               f"{', '.join(PRECISIONS)})")
        if fmt not in FORMAT_SUFFIX:
            raise BackendError(f"unknown engine format '{fmt}' (choose from "
                               f"{', '.join(FORMAT_SUFFIX)})")
        if precision == "int8" and not calibration_frames:
            raise BackendError("TensorRT int8 needs calibration frames (e.g. --calib DIR with "
                               "sample images from the cameras)")
        lo, opt, hi = batch
        if not 1 <= lo <= opt <= hi:
            raise BackendError(f"batch range must satisfy 1 <= min <= opt <= max, got {batch}")
        self.batch = (lo, opt, hi)
        self.fmt = fmt
        self.build_on_demand = build_on_demand
        self.engine_cache = cache or EngineCache()
        self._calibration = list(calibration_frames or ())[:MAX_CALIBRATION_FRAMES]
        self._initial_sizes = [tuple(s) for s in sizes]
        self.engines: dict[tuple[int, int], nn.Module] = {}
        self.engine_status: dict[tuple[int, int], str] = {}
        # CudaBackend checks CUDA first ("CUDA not available: ..."), then calls _setup
        super().__init__(net, card, precision=precision, device=device, channels_last=False,
                         cuda_graphs=False, resize_mode=resize_mode, max_batch=hi)

    # -- CudaBackend hooks ---------------------------------------------------------------------

    def _setup(self, net: nn.Module, card: ModelCard) -> None:
        self._trt = _import_torch_tensorrt()
        self.runtime = runtime_versions(self._trt)
        self._net = net
        self._fingerprint = model_fingerprint(net, card)
        for size in self._initial_sizes:
            self.prepare(self._check_size(size))

    def _module_for(self, size: tuple[int, int]) -> nn.Module:
        engine = self.engines.get(size)
        if engine is None:
            if not self.build_on_demand:
                built = ", ".join(f"{w}x{h}" for h, w in self.engines) or "none"
                raise BackendError(f"no TensorRT engine for input {size[1]}x{size[0]} "
                                   f"(engines: {built}); run 'streamcount engines build --input "
                                   f"{size[0]}x{size[1]}'")
            log.warning("building a TensorRT engine for input %dx%d on first use (minutes)",
                        size[1], size[0])
            engine = self.prepare(size)
        return engine

    def _run(self, frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        n, lo = frames.shape[0], self.batch[0]
        if n >= lo:
            return super()._run(frames, size)
        pad = np.zeros((lo - n,) + frames.shape[1:], frames.dtype)
        return super()._run(np.concatenate([frames, pad]), size)[:n]

    # -- engines -------------------------------------------------------------------------------

    def engine_key(self, size: tuple[int, int]) -> EngineKey:
        """The cache key of the engine for input ``size`` on this GPU and runtime."""
        assert self.gpu is not None
        calib = frames_fingerprint(self._calibration) if self.precision == "int8" else ""
        return EngineKey(model_sha256=self._fingerprint, input_size=size, batch=self.batch,
                         precision=self.precision, gpu=self.gpu.name,
                         capability=self.gpu.capability, runtime=self.runtime,
                         calibration=calib, fmt=self.fmt)

    def prepare(self, size: tuple[int, int]) -> nn.Module:
        """Load (or build, then cache) the engine for input ``size``."""
        key = self.engine_key(size)
        try:
            engine, how = self.engine_cache.load_or_build(
                key, lambda path: self._build(size, path), self._load)
        except BackendError:
            raise
        except Exception as e:  # noqa: BLE001 - a compiler failure is a backend problem
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"TensorRT engine for input {size[1]}x{size[0]} "
                               f"({self.precision}) failed: {first}") from e
        log.info("TensorRT engine %s: %s", key.slot, how)
        self.engines[size] = engine
        self.engine_status[size] = how
        return engine

    def _input_spec(self, size: tuple[int, int]) -> Any:
        lo, opt, hi = input_spec_shapes(size, self.batch)
        if lo == hi:
            return self._trt.Input(shape=opt, dtype=torch.float32)
        return self._trt.Input(min_shape=lo, opt_shape=opt, max_shape=hi, dtype=torch.float32)

    def _build(self, size: tuple[int, int], path: Path) -> None:
        trt = self._trt
        graph_precision = "fp16" if self.precision == "fp16" else "fp32"
        model = build_device_model(self._net, self.card, graph_precision, channels_last=False)
        model = model.to(self.device)
        quant_ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.precision == "int8":
            model, quant_ctx = self._quantize(model, size)
        spec = self._input_spec(size)
        settings = compile_settings(_settings_fields(trt), self.precision)
        log.info("compiling TensorRT engine %dx%d batch %s %s (settings %s)", size[1], size[0],
                 self.batch, self.precision, sorted(settings))
        with torch.inference_mode(False), torch.no_grad(), quant_ctx:
            trt_module = trt.compile(model, ir="dynamo", inputs=[spec], **settings)
            example = torch.zeros(input_spec_shapes(size, self.batch)[1], device=self.device)
            save_params = inspect.signature(trt.save).parameters
            if self.fmt == "torchscript":
                kw: dict[str, Any] = {"output_format": "torchscript"}
                kw["arg_inputs" if "arg_inputs" in save_params else "inputs"] = [example]
            else:
                kw = {"output_format": "exported_program"}
                # recent versions infer the dynamic batch dimension from Input objects
                kw["arg_inputs" if "arg_inputs" in save_params else "inputs"] = [spec]
            trt.save(trt_module, str(path), **kw)

    def _quantize(self, model: nn.Module, size: tuple[int, int]
                  ) -> tuple[nn.Module, contextlib.AbstractContextManager[Any]]:
        try:
            import modelopt.torch.quantization as mtq
            from modelopt.torch.quantization.utils import export_torch_mode
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"TensorRT int8 needs NVIDIA ModelOpt (pip install "
                               f"nvidia-modelopt): {e}") from None
        frames = self._calibration

        def forward_loop(m: nn.Module) -> None:
            for f in frames:
                x = torch.from_numpy(np.ascontiguousarray(f[None])).to(self.device)
                m(resize_frames(x, size, self.resize_mode))

        with torch.no_grad():
            model = mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
        return model, export_torch_mode()

    def _load(self, path: Path) -> nn.Module:
        loaded = self._trt.load(str(path))
        module = loaded if isinstance(loaded, nn.Module) else loaded.module()
        return module

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d.update(runtime=self.runtime, batch_range=list(self.batch), format=self.fmt,
                 engines={f"{w}x{h}": how for (h, w), how in self.engine_status.items()})
        return d
