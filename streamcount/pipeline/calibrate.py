"""Scale calibration per camera: pick the inference size at which the model counts right.

A density model counts people of the sizes it was trained on. On a camera whose people are much
larger in pixels (a close, high-resolution view of few walkers), it puts several people of mass
on each; downscaling the frame brings them back to a size it counts right. Training with scale
augmentation narrows this gap but does not close it, so an operator supplies the truth for a
few frames (counted by eye) and :func:`calibrate` picks the largest model-input side
(``max_side``) whose counts fit them best:

1. the frames named in the truth table are read from the input (video, image folder, stream);
2. for every candidate ``max_side`` (fractions of the native longest side; frames are never
   upscaled) the model's count of each frame is the sum of its density map, fp32;
3. the candidate with the smallest mean absolute error wins (a tie goes to the larger side);
4. a gain (``sum(true * pred) / sum(pred^2)``) is fitted at that size and recommended only
   when it lowers the error by more than :data:`GAIN_MIN_IMPROVEMENT` and the chosen side is
   the largest or smallest candidate (the scale alone could not fit the truth).

The truth table is a CSV with the header ``frame,count``: ``frame`` is the 0-based frame index
of the input (the ``frame`` column of ``counts.csv``) or, for a folder of images, an image file
name; ``count`` the people in the whole frame.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.errors import InputError
from streamcount.messages import Frame
from streamcount.sources.media import open_media

log = logging.getLogger(__name__)

#: candidate input sizes, as fractions of the input's native longest side
DEFAULT_FRACTIONS: tuple[float, ...] = (1.0, 0.85, 0.7, 0.6, 0.5, 0.42, 0.35, 0.3, 0.25, 0.2)
#: smallest model-input side tried
MIN_SIDE = 96
#: a gain is recommended only when it lowers the MAE by more than this fraction
GAIN_MIN_IMPROVEMENT = 0.2


@dataclass(frozen=True)
class TruthRow:
    """One operator-counted frame: its index or image file name, and the people in it."""

    frame: int | str
    count: float


@dataclass(frozen=True)
class Candidate:
    """The fit of one ``max_side``: per-frame predictions and their errors."""

    max_side: int
    input_size: tuple[int, int]  # (height, width) of the model input
    predictions: tuple[float, ...]
    mae: float
    bias: float  # mean (pred - true)


@dataclass(frozen=True)
class Calibration:
    """The result: the chosen ``max_side``, an optional gain, and every candidate's fit."""

    max_side: int
    mae: float
    truth: tuple[float, ...]
    candidates: tuple[Candidate, ...]
    native_side: int
    gain: float | None = None
    mae_with_gain: float | None = None
    frames: tuple[int | str, ...] = field(default=())

    @property
    def mean_count(self) -> float:
        return float(np.mean(self.truth)) if self.truth else 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON/YAML-ready summary (what ``calibrate --out`` writes)."""
        return {
            "max_side": self.max_side, "gain": self.gain,
            "mae": round(self.mae, 3),
            "mae_with_gain": None if self.mae_with_gain is None else round(self.mae_with_gain, 3),
            "frames": len(self.truth), "mean_true_count": round(self.mean_count, 3),
            "native_side": self.native_side,
            "candidates": [{"max_side": c.max_side, "input": [c.input_size[1], c.input_size[0]],
                            "mae": round(c.mae, 3), "bias": round(c.bias, 3)}
                           for c in self.candidates],
        }


def read_truth(path: str | Path) -> list[TruthRow]:
    """Read a ``frame,count`` CSV; every problem is one line naming the file and row."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{p}: counts file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: unreadable counts file ({e})") from None
    reader = csv.reader(line for line in text.splitlines() if line.strip()
                        and not line.lstrip().startswith("#"))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:2]] != ["frame", "count"]:
        raise InputError(f"{p}: the first line must be the header 'frame,count'")
    rows: list[TruthRow] = []
    seen: set[int | str] = set()
    for n, rec in enumerate(reader, start=2):
        if len(rec) < 2:
            raise InputError(f"{p}, row {n}: expected 'frame,count', got {','.join(rec)!r}")
        key_text, count_text = rec[0].strip(), rec[1].strip()
        key: int | str = int(key_text) if key_text.isdigit() else key_text
        try:
            count = float(count_text)
        except ValueError:
            raise InputError(f"{p}, row {n}: count {count_text!r} is not a number") from None
        if not count >= 0 or not np.isfinite(count):
            raise InputError(f"{p}, row {n}: count must be a non-negative number")
        if key in seen:
            raise InputError(f"{p}, row {n}: frame {key} appears twice")
        seen.add(key)
        rows.append(TruthRow(key, count))
    if not rows:
        raise InputError(f"{p}: no counted frames (one row per frame: frame,count)")
    return rows


def read_frames(input: str | Path, truth: Sequence[TruthRow]) -> list[np.ndarray]:
    """The BGR images of the truth's frames, in the truth's order (stops once all are read)."""
    want = {r.frame for r in truth}
    found: dict[int | str, np.ndarray] = {}
    with open_media(input) as media:
        last_index = max((k for k in want if isinstance(k, int)), default=-1)
        for frame in media:
            assert isinstance(frame, Frame)
            for key in (frame.index, frame.file):
                if key in want and key not in found:
                    found[key] = frame.image
            if len(found) == len(want) or (frame.index > last_index and
                                           all(isinstance(k, int) for k in want)):
                break
    missing = [str(r.frame) for r in truth if r.frame not in found]
    if missing:
        raise InputError(f"{input}: frames not in the input: {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
    return [found[r.frame] for r in truth]


def candidate_sides(native_side: int, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                    multiple: int = 8) -> list[int]:
    """Distinct candidate ``max_side`` values, largest first, never above native."""
    out: list[int] = []
    for f in fractions:
        side = max(MIN_SIDE, int(round(native_side * min(f, 1.0))) // multiple * multiple)
        if side not in out:
            out.append(side)
    return sorted(out, reverse=True)


def _fit_gain(pred: np.ndarray, truth: np.ndarray) -> float:
    den = float((pred * pred).sum())
    return float((pred * truth).sum() / den) if den > 0 else 1.0


def calibrate(images: Sequence[np.ndarray], truth: Sequence[float], infer, *, multiple: int,
              sides: Sequence[int] | None = None) -> Calibration:
    """Fit ``max_side`` (and if needed a gain) of ``infer`` to operator counts.

    Args:
        images: BGR uint8 frames (all of one camera, so one native size is assumed for the
            candidate list; each frame is still sized by its own shape).
        truth: the true count of each frame.
        infer: ``infer(batch uint8 N x H x W x 3) -> densities N x h x w`` (a backend's).
        multiple: the model's input multiple (card).
        sides: candidate ``max_side`` values (default: :func:`candidate_sides`).
    """
    if len(images) != len(truth) or not images:
        raise ValueError("calibrate needs one true count per image, and at least one image")
    native = max(max(im.shape[:2]) for im in images)
    sides = sorted(set(sides), reverse=True) if sides else candidate_sides(native,
                                                                            multiple=multiple)
    t = np.asarray(truth, dtype=np.float64)
    cands: list[Candidate] = []
    for side in sides:
        preds = []
        size = (0, 0)
        for im in images:
            size = plan_input_size(im.shape[0], im.shape[1], side, multiple)
            preds.append(float(infer(prepare_frame(im, size)[None])[0].sum()))
        p = np.asarray(preds)
        cands.append(Candidate(side, size, tuple(preds), float(np.abs(p - t).mean()),
                               float((p - t).mean())))
        log.info("max_side %d: MAE %.2f, bias %+.2f", side, cands[-1].mae, cands[-1].bias)
    best = min(cands, key=lambda c: (round(c.mae, 9), -c.max_side))
    gain = mae_gain = None
    at_edge = best.max_side in (max(sides), min(sides))
    p = np.asarray(best.predictions)
    g = _fit_gain(p, t)
    mae_g = float(np.abs(g * p - t).mean())
    if at_edge and mae_g < best.mae * (1 - GAIN_MIN_IMPROVEMENT):
        gain, mae_gain = round(g, 4), mae_g
    return Calibration(best.max_side, best.mae, tuple(t.tolist()), tuple(cands), native,
                       gain, mae_gain)


def format_report(cal: Calibration) -> str:
    """The candidates' table and the choice, for the terminal."""
    lines = [f"{'max_side':>8} {'input':>11} {'MAE':>8} {'bias':>8}"]
    for c in cal.candidates:
        mark = "  <- chosen" if c.max_side == cal.max_side else ""
        lines.append(f"{c.max_side:>8} {c.input_size[1]:>5}x{c.input_size[0]:<5} {c.mae:>8.2f} "
                     f"{c.bias:>+8.2f}{mark}")
    lines.append(f"chosen max_side {cal.max_side}: MAE {cal.mae:.2f} people per frame on "
                 f"{len(cal.truth)} frames (mean true count {cal.mean_count:.1f})")
    if cal.gain is not None:
        lines.append(f"gain {cal.gain:.3f} recommended: MAE {cal.mae_with_gain:.2f} with it "
                     f"(no input size fits the counts alone)")
    return "\n".join(lines)
