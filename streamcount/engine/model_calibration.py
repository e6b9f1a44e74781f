"""Calibrating a model's int8 backends once, on representative frames chosen by the user
(``streamcount models calibrate``), e.g. images of the model's own training data.

Without it, the first input counted with a model calibrates it (``--calibration model``, see
:mod:`streamcount.pipeline.backend_choice`). Calibrating explicitly on frames like the model's
training data makes the model's int8 calibration independent of whichever clip came first; the
frames' source is recorded with the artefact (``quantization.json``) and reported by every
later run in ``summary.json``.

Example:
    >>> frames, source = calibration_frames(Path("part_B/train_data/images"), 32, 960, 8)
    ...                                                                 # doctest: +SKIP
    >>> calibrate_model("default", frames, ("openvino-int8",), source)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.errors import InputError

log = logging.getLogger(__name__)

#: int8 backends a model is calibrated for by default
INT8_BACKENDS = ("openvino-int8",)
#: every STRIDE-th frame of a video's first frames (consecutive frames are near-copies)
VIDEO_STRIDE = 4


def _prepared(image: np.ndarray, max_side: int | None, multiple: int) -> np.ndarray:
    return prepare_frame(image, plan_input_size(image.shape[0], image.shape[1], max_side,
                                                multiple))


def calibration_frames(source: Path, count: int, max_side: int | None,
                       multiple: int) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` frames of ``source`` at the model input size, all of the most common
    size, and a description of where they came from.

    A folder gives ``count`` images spread evenly over it (name order); an image itself; a
    video every :data:`VIDEO_STRIDE`-th of its first frames.

    Raises:
        InputError: a missing, unreadable or empty source.
    """
    from streamcount.sources.media import list_images, open_media, read_image

    if count < 1:
        raise InputError(f"--frames must be at least 1, got {count}")
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    if source.is_dir():
        files = list_images(source)
        if not files:
            raise InputError(f"{source}: no images in this folder")
        step = max(1, len(files) // count)
        chosen = files[::step][:count]
        frames = [_prepared(read_image(p), max_side, multiple) for p in chosen]
        label = f"{source}: {len(chosen)} of its {len(files)} images, every {step}th"
    else:
        frames = []
        with open_media(source) as media:
            for i, frame in enumerate(media):
                if i % VIDEO_STRIDE == 0:
                    frames.append(_prepared(frame.image, max_side, multiple))
                if len(frames) >= count:
                    break
        if not frames:
            raise InputError(f"{source}: no decodable frames")
        label = (f"{source}: every {VIDEO_STRIDE}th of its first frames ({len(frames)})"
                 if len(frames) > 1 else str(source))
    shapes = [f.shape for f in frames]
    common = max(set(shapes), key=shapes.count)
    kept = [f for f in frames if f.shape == common]
    return kept, f"{label}; {len(kept)} frames at {common[1]}x{common[0]}"


def calibrate_model(model: str | None, frames: Sequence[np.ndarray],
                    backends: Sequence[str] = INT8_BACKENDS,
                    source: str | None = None) -> list[dict[str, Any]]:
    """Calibrate ``model``'s int8 ``backends`` on ``frames`` and make each the model's cached
    calibration; returns each backend's ``quantization`` description.

    Raises:
        BackendError: an unknown or uninstalled backend, or one that is not int8.
    """
    from streamcount.engine.factory import BACKENDS, BuildSettings, create_backend
    from streamcount.errors import BackendError

    out: list[dict[str, Any]] = []
    for name in backends:
        spec = BACKENDS.get(name)
        if spec is None or not spec.calibrated:
            int8 = ", ".join(n for n, s in BACKENDS.items() if s.calibrated)
            raise BackendError(f"'{name}' is not an int8 backend (int8 backends: {int8})")
        backend = create_backend(name, model, calibration_frames=list(frames),
                                 settings=BuildSettings(calibration="frames",
                                                        calibration_source=source))
        q = dict(backend.describe().get("quantization") or {})
        log.info("%s: int8 calibration of '%s' cached: %s", name, backend.card.name, q)
        out.append({"backend": name} | q)
    return out
