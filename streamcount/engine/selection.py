"""Choosing between GPU backends and the CPU, with fallback instead of failure.

Preference for ``auto``: **tensorrt > cuda > the best CPU backend**. TensorRT is tried only where
torch-tensorrt imports and a CUDA GPU is visible; CUDA only where a GPU is visible. Every
decision is logged with its reason (INFO when a GPU is used, WARNING when a GPU backend was
expected to work and did not), and a GPU backend that cannot load - import failure, engine build
failure, driver error, out of memory - falls back to the next candidate with a warning; it never
stops the program. The CPU choice itself belongs to the backend factory, which passes it in as
``cpu_auto``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from streamcount.engine.base import Backend
from streamcount.engine.cache import package_version
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard

if TYPE_CHECKING:  # the GPU modules import torch: only where a GPU may be present
    from torch import nn

    from streamcount.engine.cuda import CudaProbe
    from streamcount.engine.tensorrt import TensorRTProbe

log = logging.getLogger(__name__)

#: GPU backends in order of preference
GPU_BACKENDS: tuple[str, ...] = ("tensorrt", "cuda")
#: precision each GPU backend uses unless told otherwise
DEFAULT_PRECISION: dict[str, str] = {"tensorrt": "fp16", "cuda": "fp16"}


@dataclass(frozen=True)
class Candidate:
    """One backend ``auto`` considered, and why it is (not) usable."""

    name: str
    usable: bool
    reason: str


def cpu_only_torch() -> str | None:
    """Why there can be no CUDA backend, when the installed torch wheel says so in its version
    (``2.13.0+cpu``): known without importing torch (1.2 s). None when it may have CUDA."""
    version = package_version("torch")
    if version.endswith("+cpu"):
        return f"this PyTorch build ({version}) has no CUDA support"
    return None


def gpu_candidates(cuda: CudaProbe | None = None,
                   trt: TensorRTProbe | None = None) -> list[Candidate]:
    """The GPU backends in preference order with whether each can be tried here."""
    if cuda is None:
        why = cpu_only_torch()
        if why is not None:
            return [Candidate(n, False, f"no CUDA GPU ({why})") for n in GPU_BACKENDS]
        from streamcount.engine.cuda import probe_cuda

        cuda = probe_cuda()
    if not cuda.available:
        return [Candidate(n, False, f"no CUDA GPU ({cuda.reason})") for n in GPU_BACKENDS]
    if trt is None:
        from streamcount.engine.tensorrt import probe_tensorrt

        trt = probe_tensorrt()
    gpu = f"{cuda.name} (compute {cuda.capability})"
    return [Candidate("tensorrt", trt.available,
                      f"{gpu}, {trt.runtime}" if trt.available else trt.reason),
            Candidate("cuda", True, f"{gpu}, PyTorch CUDA {cuda.torch_cuda}")]


def create_gpu_backend(name: str, net: nn.Module, card: ModelCard, *,
                       precision: str | None = None,
                       calibration_frames: Sequence[np.ndarray] | None = None,
                       **options: object) -> Backend:
    """Construct GPU backend ``name`` (raises :class:`BackendError` if it cannot run here)."""
    from streamcount.engine.cuda import CudaBackend
    from streamcount.engine.tensorrt import TensorRTBackend

    prec = precision or DEFAULT_PRECISION.get(name, "fp16")
    if name == "cuda":
        return CudaBackend(net, card, precision=prec, **options)  # type: ignore[arg-type]
    if name == "tensorrt":
        return TensorRTBackend(net, card, precision=prec,  # type: ignore[arg-type]
                               calibration_frames=calibration_frames, **options)
    raise BackendError(f"unknown GPU backend '{name}' (known: {', '.join(GPU_BACKENDS)})")


def _precision_for(backend: str, requested: str | None) -> str | None:
    """``requested`` if ``backend`` supports it, else None (its default), e.g. when a tensorrt
    int8 request falls back to cuda, which has no int8."""
    from streamcount.engine.cuda import PRECISIONS as CUDA_PRECISIONS
    from streamcount.engine.tensorrt import PRECISIONS as TRT_PRECISIONS

    supported = {"cuda": CUDA_PRECISIONS, "tensorrt": TRT_PRECISIONS}.get(backend, ())
    if requested is not None and requested not in supported:
        log.info("backend %s has no %s; using its default %s", backend, requested,
                 DEFAULT_PRECISION.get(backend))
        return None
    return requested


def select_backend(name: str, net: nn.Module, card: ModelCard, *,
                   cpu_auto: Callable[[], Backend],
                   precision: str | None = None,
                   calibration_frames: Sequence[np.ndarray] | None = None,
                   candidates: Sequence[Candidate] | None = None,
                   create: Callable[..., Backend] = create_gpu_backend) -> Backend:
    """The backend for ``name`` = ``auto``, ``tensorrt`` or ``cuda``, falling back down the
    preference list (tensorrt -> cuda -> ``cpu_auto()``) with a warning when one cannot load.

    ``candidates`` and ``create`` are injectable for tests (the defaults probe this machine).
    """
    if name != "auto" and name not in GPU_BACKENDS:
        raise BackendError(f"'{name}' is not a GPU backend (known: auto, "
                           f"{', '.join(GPU_BACKENDS)})")
    cands = list(candidates) if candidates is not None else gpu_candidates()
    if name != "auto":  # an explicit GPU backend: start the list there
        cands = cands[[c.name for c in cands].index(name):]
    failed: list[str] = []
    for c in cands:
        if not c.usable:
            if name == c.name:
                log.warning("backend %s requested but unavailable: %s", c.name, c.reason)
            else:
                log.info("backend %s skipped: %s", c.name, c.reason)
            failed.append(f"{c.name}: {c.reason}")
            continue
        try:
            backend = create(c.name, net, card, precision=_precision_for(c.name, precision),
                             calibration_frames=calibration_frames)
        except Exception as e:  # noqa: BLE001 - any GPU failure falls back, never crashes
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning("backend %s could not load (%s); falling back", c.name, first)
            failed.append(f"{c.name}: {first}")
            continue
        log.info("using backend %s: %s", c.name, c.reason)
        return backend
    backend = cpu_auto()
    level = logging.WARNING if name != "auto" else logging.INFO
    log.log(level, "using CPU backend %s (%s)", getattr(backend, "name", "?"),
            "; ".join(failed) or "no GPU backends")
    return backend
