"""The density backend of ``streamcount count``: ``auto``'s choice, int8 calibration once per
model, and the cheap fp32 parity check each new input gets.

int8 calibration belongs to the model, not to the clip: with the ``model`` policy (the
default) the int8 backend reuses the calibration cached for the model, backend and runtime
(built once, on the frames of the first input counted without one, and recorded with the
artefact), so a new clip costs no calibration. What ``auto`` still owes each input is the
check that the reduced-precision counts stay within :data:`MAX_AUTO_DEVIATION` of fp32 *on
that input*: :data:`PARITY_FRAMES` of its first frames through fp32 and int8. Out of
tolerance, it falls back as before (the float backends of :data:`AUTO_FLOAT_FALLBACKS`,
then fp32). The ``clip`` policy calibrates on the input's own frames every time (the old
behaviour, for inputs unlike anything the model was calibrated on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamcount.engine import factory
from streamcount.engine.base import Backend
from streamcount.engine.factory import BuildSettings
from streamcount.errors import BackendError
from streamcount.models.card import ModelCard

if TYPE_CHECKING:
    from torch import nn

    from streamcount.models.lazy import LazyNet

log = logging.getLogger(__name__)

#: frames used to calibrate int8 backends when the model has no calibration yet (or with the
#: ``clip`` policy): every CALIBRATION_STRIDE-th of the input's first frames (model-input
#: size); spread-out frames calibrate better than consecutive near-copies
CALIBRATION_FRAMES = 32
CALIBRATION_STRIDE = 4
#: frames of a new input the parity check runs through fp32 and the reused int8 model
PARITY_FRAMES = 8
#: ``auto`` accepts a reduced-precision backend only if its counts stay this close to fp32
#: (mean relative difference on the input's first frames)
MAX_AUTO_DEVIATION = 0.02
#: below this many people per frame ``auto`` judges the deviation in people, not percent:
#: 2 % of 20 = 0.4 person (percentages of a sparse scene's few people are mostly noise)
AUTO_MIN_COUNT = 20.0
#: reduced-precision float backends ``auto`` tries, fastest first, when int8 is too far off
AUTO_FLOAT_FALLBACKS = ("openvino-bf16",)
#: the fp32 backends a parity check compares against, first that loads
REFERENCE_BACKENDS = ("openvino", "torch")

Model = Path | tuple["nn.Module | LazyNet", ModelCard]


@dataclass
class BackendChoice:
    """The density backend chosen for one input, and the evidence.

    ``parity``: the fp32 check on the input's frames (None when none was needed), with
    ``frames``, ``deviation`` (:func:`auto_deviation`), ``reference`` and ``accepted``.
    """

    backend: Backend
    parity: dict[str, Any] | None = None
    tried: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The ``auto`` section of ``summary.json``."""
        return {"backend": self.backend.name, "parity": self.parity, "rejected": self.tried}


def auto_deviation(reference: Sequence[float], counts: Sequence[float]) -> float:
    """Mean ``|count - fp32| / max(fp32, AUTO_MIN_COUNT)``: relative for crowds, in people
    (fractions of :data:`AUTO_MIN_COUNT`) for sparse scenes."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    return float(np.mean(np.abs(c - r) / np.maximum(np.abs(r), AUTO_MIN_COUNT)))


def frame_counts(backend: Backend, frames: Sequence[np.ndarray]) -> list[float]:
    """The density sum of each frame (one ``infer`` call per group of equal shapes)."""
    if not frames:
        return []
    if all(f.shape == frames[0].shape for f in frames):
        return [float(d.sum(dtype=np.float64)) for d in backend.infer(np.stack(frames))]
    return [float(backend.infer(f[None]).sum(dtype=np.float64)) for f in frames]


def create_reference(model: Model, threads: int | None = None,
                     settings: BuildSettings | None = None) -> Backend:
    """The fp32 backend parity checks compare against (OpenVINO fp32, else PyTorch)."""
    skipped: list[str] = []
    for name in REFERENCE_BACKENDS:
        try:
            return factory.create_backend(name, model, threads=threads, settings=settings)
        except BackendError as e:
            skipped.append(f"{name}: {e}")
    raise BackendError("no fp32 backend for the parity check: " + "; ".join(skipped))


def _quantization(backend: Backend) -> dict[str, Any] | None:
    q = backend.describe().get("quantization")
    return q if isinstance(q, dict) else None


def choose_counting_backend(name: str, model: Model, *, threads: int | None = None,
                            calibration: Sequence[np.ndarray] = (),
                            settings: BuildSettings | None = None,
                            reference: Callable[[], Backend] | None = None,
                            parity_frames: int = PARITY_FRAMES) -> BackendChoice:
    """Backend ``name`` for ``model``; for ``auto``, the fastest whose counts stay within
    :data:`MAX_AUTO_DEVIATION` of fp32 on ``calibration`` (the input's first frames at the
    density input size): :func:`create_density_backend` then :func:`check_auto`.

    Args:
        name: backend name (``auto``: see the module docstring).
        model: a weight file or a loaded ``(net, card)``.
        threads: inference threads.
        calibration: the input's frames: int8 calibration when the model has none cached (or
            with the ``clip`` policy), and the parity check.
        settings: throughput mode and calibration policy.
        reference: returns the fp32 backend to compare with (default: :func:`create_reference`;
            a caller that already has one shares it).
        parity_frames: frames of ``calibration`` a reused calibration is checked on.
    """
    backend = create_density_backend(name, model, threads=threads, calibration=calibration,
                                     settings=settings)
    return check_auto(backend, name, model, threads=threads, frames=calibration,
                      settings=settings, reference=reference, parity_frames=parity_frames)


def create_density_backend(name: str, model: Model, *, threads: int | None = None,
                           calibration: Sequence[np.ndarray] = (),
                           settings: BuildSettings | None = None) -> Backend:
    """Backend ``name`` (``auto``: the fastest that loads) for ``model``; ``calibration``
    frames calibrate an int8 backend as ``settings.calibration`` says."""
    return factory.create_backend(name, model, threads=threads,
                                  calibration_frames=list(calibration), settings=settings)


def check_auto(backend: Backend, name: str, model: Model, *, threads: int | None = None,
               frames: Sequence[np.ndarray] = (), settings: BuildSettings | None = None,
               reference: Callable[[], Backend] | None = None,
               parity_frames: int = PARITY_FRAMES) -> BackendChoice:
    """``auto``'s check of a reduced-precision ``backend`` against fp32 on ``frames`` of this
    input (the frames the model will see), with the fallbacks of the module docstring.

    Nothing is checked for a float backend, a backend that was not chosen by ``auto``, or an
    int8 model calibrated on these very frames within the limit (it measured itself).
    """
    settings = settings or BuildSettings()
    frames = list(frames)
    q = _quantization(backend)
    if name != "auto" or q is None or not frames:
        return BackendChoice(backend)
    reused = str(q.get("calibration", "")).startswith("cached")
    dev = q.get("calibration_deviation")
    if not reused and dev is not None and float(dev) <= MAX_AUTO_DEVIATION:
        return BackendChoice(backend)  # calibrated on these very frames, and close enough
    if reused:  # a few frames spread over the head of the input
        step = max(1, len(frames) // max(1, parity_frames))
        frames = frames[::step][:parity_frames]
    ref = (reference or (lambda: create_reference(model, threads, settings)))()
    ref_counts = frame_counts(ref, frames)
    people_dev = auto_deviation(ref_counts, frame_counts(backend, frames))
    parity = {"frames": len(frames), "deviation": round(people_dev, 5), "reference": ref.name,
              "candidate": backend.name, "calibration": "reused" if reused else "this input"}
    if people_dev <= MAX_AUTO_DEVIATION:
        log.info("auto: keeping %s: %.2f %% of max(count, %g people) from fp32 on %d frames of "
                 "this input", backend.name, 100 * people_dev, AUTO_MIN_COUNT, len(frames))
        return BackendChoice(backend, parity | {"accepted": True})
    log.warning("auto: %s counts differ from fp32 by %.1f %% on the first frames (limit "
                "%.0f %%); trying float backends", backend.name, 100 * people_dev,
                100 * MAX_AUTO_DEVIATION)
    tried = [f"{backend.name}: {100 * people_dev:.2f} %"]
    for candidate in AUTO_FLOAT_FALLBACKS:
        try:
            other = factory.create_backend(candidate, model, threads=threads, settings=settings)
        except BackendError as e:
            log.info("auto: %s skipped (%s)", candidate, e)
            continue
        if other.name == ref.name:
            continue
        dev2 = auto_deviation(ref_counts, frame_counts(other, frames))
        if dev2 <= MAX_AUTO_DEVIATION:
            log.warning("auto: using %s (%.2f %% from fp32 on the first frames)", other.name,
                        100 * dev2)
            return BackendChoice(other, parity | {"accepted": False}, tried)
        tried.append(f"{other.name}: {100 * dev2:.2f} %")
        log.info("auto: %s differs from fp32 by %.2f %%; not used", other.name, 100 * dev2)
    log.warning("auto: using %s fp32", ref.name)
    return BackendChoice(ref, parity | {"accepted": False}, tried)


def create_counting_backend(name: str, model: Model, *, threads: int | None = None,
                            calibration: Sequence[np.ndarray] = (),
                            settings: BuildSettings | None = None) -> Backend:
    """:func:`choose_counting_backend`'s backend."""
    return choose_counting_backend(name, model, threads=threads, calibration=calibration,
                                   settings=settings).backend
