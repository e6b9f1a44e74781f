"""Post-training int8 quantisation for the CPU runtimes, calibrated on real frames and checked.

Both runtimes quantise the exported deploy graph (uint8 BGR in, density out) with static
activation ranges taken from calibration frames. Which settings keep counts closest to fp32
depends on the weights, so each runtime has an ordered list of :class:`QuantRecipe` s and
:func:`choose` keeps the first whose counts on the calibration frames stay within
:data:`ACCEPT_DEVIATION` of fp32 (else the best one tried). The choice and its deviation are
stored beside the artefact and reported by the backend's ``describe()``.

Measured (mean |count - fp32| / fp32 on 30 ShanghaiTech part_B test images, calibrated on 16
part_B train images, max side 960):

* ORT, MCNN part B weights: per-channel weights 2.2 %, per-tensor 0.9 %; a 1/4-CSRNet student
  (epoch 32): per-channel 0.85 %; random student weights: per-tensor 4.9 %, per-channel 0.3 %.
* NNCF on that student: its default activation ranges 2.55 % (all counts low: the largest
  activations are clipped), global min/max ranges 1.47 % (0.89 % with 32 calibration frames),
  min/max with the first conv in float too 0.99 %. Keeping the last conv (the density head) in
  float always helped; it is a 1x1 conv at 1/8 resolution, a negligible share of the work.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from streamcount.errors import BackendError

log = logging.getLogger(__name__)

#: mean absolute relative count deviation from fp32 (on the calibration frames) at which a
#: recipe is accepted without trying the next one
ACCEPT_DEVIATION = 0.01
#: counts below this many people are compared in absolute terms (relative error of ~0 is noise)
MIN_COUNT = 1.0
#: file beside a quantised artefact recording the recipes tried and their deviations
REPORT_FILE = "quantization.json"

_T = TypeVar("_T")


#: where ``streamcount count``'s int8 calibration comes from: ``model`` (default: once per
#: model, backend and runtime; the model's cached calibration is reused on every input, and the
#: input's frames calibrate only when none is cached) or ``clip`` (the input's own frames,
#: every time, without replacing the model's calibration)
CALIBRATION_POLICIES = ("model", "clip")
#: what the int8 backends accept: the above plus ``frames`` (their default, and ``streamcount
#: models calibrate``: calibrate on the given frames and make that the model's calibration)
BACKEND_POLICIES = ("frames", *CALIBRATION_POLICIES)
#: fewer frames than this never become a model's calibration (a single image is not
#: representative): they calibrate that input only
MIN_MODEL_FRAMES = 8


class CalibrationRequired(BackendError):
    """An int8 backend was asked for without calibration frames and none were cached."""


class CalibrationPlan(NamedTuple):
    """What an int8 backend loads: ``key``; whether it ``reused`` the model's cached
    calibration; whether to ``remember`` the artefact as the model's calibration."""

    key: Any
    reused: bool
    remember: bool


def calibration_key(cache: Any, key: Any, frames: Sequence[np.ndarray], policy: str,
                    backend: str, model: str) -> CalibrationPlan:
    """The artefact an int8 backend should load under calibration ``policy``.

    ``key`` is the :class:`~streamcount.engine.cache.ArtefactKey` for calibrating on
    ``frames``. ``model``: the model's remembered calibration
    (:meth:`~streamcount.engine.cache.ArtefactCache.recall`) when one is cached, else
    calibrate on the frames (remembered as the model's if there are at least
    :data:`MIN_MODEL_FRAMES`). ``clip``: the frames, not remembered. ``frames``: the frames,
    remembered. Without frames every policy falls back to the remembered calibration.

    Raises:
        BackendError: an unknown policy.
        CalibrationRequired: no frames and nothing cached.
    """
    if policy not in BACKEND_POLICIES:
        raise BackendError(f"unknown calibration policy '{policy}' (choose from "
                           f"{', '.join(BACKEND_POLICIES)})")
    if policy == "model" or not frames:
        remembered = cache.recall(key)
        if remembered is not None:
            log.info("%s: reusing the int8 calibration cached for model '%s'", backend, model)
            return CalibrationPlan(remembered, True, False)
        if not frames:
            raise CalibrationRequired(f"backend '{backend}' needs calibration frames for model "
                                      f"'{model}' (none given and none cached)")
    if policy == "clip":
        return CalibrationPlan(key, False, False)
    if policy == "model" and len(frames) < MIN_MODEL_FRAMES:
        log.info("%s: %d calibration frames calibrate this input only (a model's calibration "
                 "needs %d)", backend, len(frames), MIN_MODEL_FRAMES)
        return CalibrationPlan(key, False, False)
    return CalibrationPlan(key, False, True)


@dataclass(frozen=True)
class QuantRecipe:
    """One set of post-training quantisation settings."""

    name: str
    per_channel: bool = True  # per-output-channel weight scales (ORT; NNCF always per channel)
    keep_first: bool = False  # leave the first conv(s) of the graph in floating point
    keep_last: bool = True  # leave the last conv(s) (the density head) in floating point
    preset: str = "performance"  # NNCF: "performance" (symmetric activations) or "mixed"
    fast_bias_correction: bool = True  # NNCF only
    #: NNCF activation ranges: "minmax" (extremes over all frames) or "nncf" (its default,
    #: which clips the largest activations and biased counts low by 2.5 %); ORT always min/max
    activation_ranges: str = "minmax"


#: ONNX Runtime recipes, tried in order (QOperator format, u8 activations, s8 weights)
ORT_RECIPES: tuple[QuantRecipe, ...] = (
    QuantRecipe("per-channel, head fp32"),
    QuantRecipe("per-tensor, head fp32", per_channel=False),
    QuantRecipe("per-channel, stem and head fp32", keep_first=True),
)

#: OpenVINO/NNCF recipes, tried in order
OV_RECIPES: tuple[QuantRecipe, ...] = (
    QuantRecipe("min/max ranges, head fp32"),
    QuantRecipe("min/max ranges, stem and head fp32", keep_first=True),
    QuantRecipe("NNCF ranges, stem and head fp32", keep_first=True, activation_ranges="nncf"),
)


def recipes_key(recipes: Sequence[QuantRecipe]) -> str:
    """A stable text for the cache key of an artefact chosen among ``recipes``."""
    return json.dumps({"recipes": [asdict(r) for r in recipes], "accept": ACCEPT_DEVIATION},
                      sort_keys=True)


def check_calibration_frames(frames: Sequence[np.ndarray] | None,
                             multiple: int) -> list[np.ndarray]:
    """The calibration frames as a list of contiguous uint8 ``H x W x 3`` arrays.

    Raises ValueError for a frame of another dtype or shape, or a size that is not a multiple
    of ``multiple`` (frames must be prepared at the model input size).
    """
    out: list[np.ndarray] = []
    for i, f in enumerate(frames or ()):
        a = np.asarray(f)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"calibration frame {i}: expected uint8 HxWx3 BGR, got "
                             f"{a.dtype} {a.shape}")
        if a.shape[0] % multiple or a.shape[1] % multiple:
            raise ValueError(f"calibration frame {i}: size {a.shape[1]}x{a.shape[0]} is not a "
                             f"multiple of {multiple}")
        out.append(np.ascontiguousarray(a))
    return out


def count_deviation(reference: Sequence[float], counts: Sequence[float]) -> float:
    """Mean absolute relative difference of per-image counts, ``|c - r| / max(|r|, 1)``."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if r.shape != c.shape or r.size == 0:
        raise ValueError(f"count lists differ in length or are empty: {r.shape} vs {c.shape}")
    return float(np.mean(np.abs(c - r) / np.maximum(np.abs(r), MIN_COUNT)))


def edge_layers(order: Sequence[str], inputs: Mapping[str, Sequence[str]],
                convs: set[str]) -> tuple[list[str], list[str]]:
    """The first and last convolutions of a graph.

    ``order`` lists node names topologically, ``inputs`` maps a node to the nodes it reads and
    ``convs`` names the convolutions. A conv is *first* when no conv precedes it on any path
    from the input (MCNN has three, one per column) and *last* when no conv follows it.
    """
    after_conv: dict[str, bool] = {}
    for n in order:
        after_conv[n] = any(p in convs or after_conv.get(p, False) for p in inputs.get(n, ()))
    consumers: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for p in inputs.get(n, ()):
            consumers.setdefault(p, []).append(n)
    before_conv: dict[str, bool] = {}
    for n in reversed(order):
        before_conv[n] = any(c in convs or before_conv.get(c, False) for c in consumers.get(n, ()))
    first = [n for n in order if n in convs and not after_conv[n]]
    last = [n for n in order if n in convs and not before_conv[n]]
    return first, last


def float_layers(recipe: QuantRecipe, first: Sequence[str], last: Sequence[str]) -> list[str]:
    """Names of the convolutions ``recipe`` keeps in floating point."""
    keep: list[str] = []
    if recipe.keep_first:
        keep += [n for n in first if n not in keep]
    if recipe.keep_last:
        keep += [n for n in last if n not in keep]
    return keep


@dataclass(frozen=True)
class Trial(Generic[_T]):
    """A recipe tried by :func:`choose` and the count deviation it gave."""

    recipe: QuantRecipe
    deviation: float
    result: _T


def choose(recipes: Sequence[QuantRecipe], build: Callable[[QuantRecipe], _T],
           deviation: Callable[[_T], float],
           accept: float = ACCEPT_DEVIATION) -> tuple[Trial[_T], list[Trial[_T]]]:
    """Build recipes in order until one's count deviation is at most ``accept``.

    Returns the chosen trial (the first accepted, else the one with the lowest deviation) and
    every trial made. A recipe whose build fails is logged and skipped; if all fail, the last
    error is raised.
    """
    trials: list[Trial[_T]] = []
    error: Exception | None = None
    for recipe in recipes:
        try:
            result = build(recipe)
        except Exception as e:  # noqa: BLE001 - a failing recipe just is not a candidate
            log.warning("int8 recipe '%s' failed: %s", recipe.name, e)
            error = e
            continue
        dev = deviation(result)
        trials.append(Trial(recipe, dev, result))
        log.info("int8 recipe '%s': mean count deviation %.2f %% on the calibration frames",
                 recipe.name, 100 * dev)
        if dev <= accept:
            return trials[-1], trials
    if not trials:
        assert error is not None
        raise error
    best = min(trials, key=lambda t: t.deviation)
    log.warning("no int8 recipe met %.1f %% on the calibration frames; using '%s' (%.2f %%)",
                100 * accept, best.recipe.name, 100 * best.deviation)
    return best, trials


def write_report(directory: Path, chosen: Trial[Any], trials: Sequence[Trial[Any]],
                 frames: int, source: str | None = None) -> None:
    """Record the recipe choice beside the artefact (read back by :func:`read_report`);
    ``source`` says where the calibration frames came from."""
    report = {"recipe": asdict(chosen.recipe), "deviation": chosen.deviation,
              "calibration_frames": frames, "calibration_source": source,
              "tried": [{"recipe": t.recipe.name, "deviation": t.deviation} for t in trials]}
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=1))


def describe_report(report: dict[str, Any], reused: bool) -> dict[str, Any]:
    """The ``quantization`` entry of a backend's ``describe()`` for a :func:`read_report`."""
    return {"recipe": report["recipe"]["name"],
            "calibration_frames": report["calibration_frames"],
            "calibration_deviation": round(float(report["deviation"]), 5),
            "calibration_source": report.get("calibration_source"),
            "calibration": "cached for the model" if reused else "calibrated on these frames"}


def read_report(directory: Path) -> dict[str, Any]:
    """The recipe choice stored by :func:`write_report` (empty if absent)."""
    p = directory / REPORT_FILE
    return json.loads(p.read_text()) if p.is_file() else {}


# --- ONNX Runtime ---------------------------------------------------------------------------


class OnnxQuantizer:
    """Static int8 quantisation (QOperator: QLinearConv etc.) of one ONNX model for several
    recipes: the graph is pre-processed and the activation ranges are collected once."""

    def __init__(self, src: Path, workdir: Path, frames: Sequence[np.ndarray],
                 input_name: str) -> None:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self._frames = list(frames)
        self._input_name = input_name
        self._pre = workdir / "preprocessed.onnx"
        self._ranges = workdir / "calibration-ranges.json"
        quant_pre_process(str(src), str(self._pre))
        graph = onnx.load(str(self._pre)).graph
        producer = {out: n.name for n in graph.node for out in n.output}
        order = [n.name for n in graph.node]
        inputs = {n.name: [producer[i] for i in n.input if i in producer] for n in graph.node}
        convs = {n.name for n in graph.node if n.op_type == "Conv"}
        self.first, self.last = edge_layers(order, inputs, convs)

    def __call__(self, recipe: QuantRecipe, dst: Path) -> Path:
        """Quantise with ``recipe`` into ``dst``; return ``dst``."""
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                              QuantFormat, QuantType, quantize_static)

        frames, name = self._frames, self._input_name

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(frames)

            def get_next(self) -> dict[str, np.ndarray] | None:
                f = next(self._it, None)
                return None if f is None else {name: f[None]}

        quantize_static(str(self._pre), str(dst), _Reader(), quant_format=QuantFormat.QOperator,
                        per_channel=recipe.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_layers(recipe, self.first, self.last),
                        calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=str(self._ranges))
        return dst

    def cleanup(self) -> None:
        """Remove the intermediate files."""
        self._pre.unlink(missing_ok=True)
        self._ranges.unlink(missing_ok=True)


# --- OpenVINO / NNCF ------------------------------------------------------------------------


def quantize_openvino(model: Any, frames: Sequence[np.ndarray], recipe: QuantRecipe) -> Any:
    """NNCF post-training int8 quantisation of OpenVINO model ``model`` (returns a new model)."""
    import nncf

    ops = model.get_ordered_ops()
    order = [op.get_friendly_name() for op in ops]
    inputs = {op.get_friendly_name(): [i.get_source_output().get_node().get_friendly_name()
                                       for i in op.inputs()] for op in ops}
    convs = {op.get_friendly_name() for op in ops if op.get_type_name() == "Convolution"}
    first, last = edge_layers(order, inputs, convs)
    keep = float_layers(recipe, first, last)
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE,
              "mixed": nncf.QuantizationPreset.MIXED}[recipe.preset]
    dataset = nncf.Dataset(list(frames), lambda f: f[None])
    advanced = None
    if recipe.activation_ranges == "minmax":
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        advanced = AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # progress bars
            return nncf.quantize(model.clone(), dataset, subset_size=len(frames), preset=preset,
                                 fast_bias_correction=recipe.fast_bias_correction,
                                 ignored_scope=nncf.IgnoredScope(names=keep) if keep else None,
                                 advanced_parameters=advanced)
    finally:
        nncf_log.setLevel(level)
