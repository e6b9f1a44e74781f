"""Model throughput: latency and frames/s per backend x precision x batch x input size.

Each backend is built once per precision (a TensorRT build covers all requested sizes) and
timed on ``uint8`` frames already at the model input size, i.e. the :class:`Backend` contract
the scheduler uses. A backend that cannot run here (no GPU, package missing, precision not
supported) gives one ``unavailable`` row with the reason instead of stopping the benchmark.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from streamcount.bench.sizes import model_input, size_label
from streamcount.engine.base import Backend
from streamcount.engine.cuda import probe_cuda
from streamcount.engine.selection import GPU_BACKENDS, create_gpu_backend
from streamcount.engine.timing import time_backend
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import BackendError, UserError
from streamcount.models.card import ModelCard

log = logging.getLogger(__name__)

#: backends whose precision is chosen by the ``precisions`` argument; others have their own
PRECISION_AWARE: tuple[str, ...] = (*GPU_BACKENDS, "torch")

BackendMaker = Callable[..., Backend]


@dataclass(frozen=True)
class ModelBenchRow:
    """One measured (or unavailable) combination."""

    backend: str
    precision: str
    batch: int
    size: tuple[int, int] | None
    status: str  # ok | unavailable | failed
    reason: str = ""
    runs: int = 0
    median_ms: float | None = None  # per batch
    min_ms: float | None = None
    max_ms: float | None = None
    frames_per_s: float | None = None
    ms_per_frame: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def make_backend(name: str, precision: str, net: nn.Module, card: ModelCard, *,
                 sizes: Sequence[tuple[int, int]], max_batch: int,
                 threads: int | None = None) -> Backend:
    """Construct backend ``name`` in ``precision`` for a benchmark (raises BackendError)."""
    if name in GPU_BACKENDS:
        opts: dict[str, object] = {}
        if name == "tensorrt":
            opts = {"sizes": list(sizes), "batch": (1, max_batch, max_batch)}
        if name == "tensorrt" and precision == "int8":
            rng = np.random.default_rng(0)
            h, w = sizes[0]
            opts["calibration_frames"] = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                                          for _ in range(8)]
        return create_gpu_backend(name, net, card, precision=precision, **opts)
    if name == "torch":
        if precision != "fp32":
            raise BackendError(f"the torch backend runs fp32 only, not {precision}")
        return TorchBackend(net, card, threads=threads)
    from streamcount.engine.factory import create_backend

    return create_backend(name, (net, card), threads=threads)


def bench_model(net: nn.Module, card: ModelCard, *, backends: Sequence[str],
                precisions: Sequence[str], batches: Sequence[int],
                sizes: Sequence[tuple[int, int]], warmup: int = 3, runs: int = 20,
                max_seconds: float | None = 10.0, threads: int | None = None,
                make: BackendMaker = make_backend,
                progress: Callable[[ModelBenchRow], None] | None = None) -> list[ModelBenchRow]:
    """Time every backend x precision x batch x size (see the module docstring)."""
    sizes = [model_input(s, card.input_multiple) for s in sizes]
    rng = np.random.default_rng(0)
    rows: list[ModelBenchRow] = []

    def emit(row: ModelBenchRow) -> None:
        rows.append(row)
        if progress is not None:
            progress(row)

    for name in backends:
        seen_own_precision = False
        for precision in precisions:
            if name not in PRECISION_AWARE:
                if seen_own_precision:
                    continue  # its precision is its own: measure it once
                seen_own_precision = True
            try:
                backend = make(name, precision, net, card, sizes=sizes, max_batch=max(batches),
                               threads=threads)
            except UserError as e:
                emit(ModelBenchRow(name, precision, 0, None, "unavailable", str(e)))
                continue
            desc = dict(backend.describe())
            prec = precision if name in PRECISION_AWARE else str(desc.get("precision", "native"))
            actual = str(desc.get("backend", name))
            label = name if actual == name else f"{name}->{actual}"  # the factory fell back
            for size in sizes:
                for batch in batches:
                    frames = rng.integers(0, 256, (batch, *size, 3), dtype=np.uint8)
                    try:
                        t = time_backend(backend, frames, warmup=warmup, runs=runs,
                                         max_seconds=max_seconds)
                    except (UserError, RuntimeError, ValueError) as e:
                        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                        log.warning("%s %s batch %d %s failed: %s", name, prec, batch,
                                    size_label(size), first)
                        emit(ModelBenchRow(label, prec, batch, size, "failed", first))
                        continue
                    emit(ModelBenchRow(
                        label, prec, batch, size, "ok", runs=int(t["runs"]),
                        median_ms=round(float(t["median_ms"]), 3),
                        min_ms=round(float(t["min_ms"]), 3), max_ms=round(float(t["max_ms"]), 3),
                        frames_per_s=round(float(t["fps"]), 2),
                        ms_per_frame=round(float(t["ms_per_frame"]), 3), details=desc))
            del backend
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows


def machine_info() -> dict[str, Any]:
    """What a benchmark result must record about where it ran."""
    gpu = probe_cuda()
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "gpu": gpu.name if gpu.available else None,
            "gpu_capability": gpu.capability or None,
            "gpu_note": None if gpu.available else gpu.reason}


def rows_to_json(rows: Sequence[ModelBenchRow]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = asdict(r)
        d["size"] = size_label(r.size) if r.size else None
        out.append(d)
    return out


TABLE_HEADER = (f"{'backend':<10} {'prec':<5} {'size':>9} {'batch':>5} {'ms/batch':>9} "
                f"{'max':>9} {'ms/frame':>9} {'frames/s':>9}")


def format_row(r: ModelBenchRow) -> str:
    """One table line (see :data:`TABLE_HEADER`)."""
    size = size_label(r.size) if r.size else "-"
    if r.status != "ok":
        return (f"{r.backend:<10} {r.precision:<5} {size:>9} {r.batch or '-':>5} "
                f"{r.status}: {r.reason}")
    return (f"{r.backend:<10} {r.precision:<5} {size:>9} {r.batch:>5} {r.median_ms:>9.2f} "
            f"{r.max_ms:>9.2f} {r.ms_per_frame:>9.2f} {r.frames_per_s:>9.1f}")


def format_table(rows: Sequence[ModelBenchRow]) -> str:
    """A fixed-width table, one line per row."""
    return "\n".join([TABLE_HEADER, "-" * len(TABLE_HEADER), *(format_row(r) for r in rows)])


def load_bench_model(ref: str | None) -> tuple[nn.Module, ModelCard, str]:
    """``(net, card, weights)`` for ``--model``: a weight file or name as everywhere else; an
    architecture name without imported weights gets *random* weights (speed does not depend on
    them) and ``weights == "random"``. Without ``--model``: the default model if installed,
    else the 1/4-CSRNet student with random weights."""
    from streamcount.errors import ModelError
    from streamcount.models.registry import ARCHITECTURES, build
    from streamcount.models.weights import load_model, resolve_model

    try:
        path = resolve_model(ref)
    except ModelError:
        arch = ref if ref in ARCHITECTURES else None if ref else "csrnet_1_4"
        if arch is None:
            raise
        log.warning("no weights for '%s': benchmarking %s with random weights", ref or "default",
                    arch)
        torch.manual_seed(0)
        return (build(arch).eval(),
                ModelCard.for_arch(arch, name=f"{arch}-random"), "random")
    net, card = load_model(path)
    return net, card, str(path)
