"""Input size policy and frame preparation (resize only; colour and normalisation are in the
model graph, see :class:`streamcount.models.deploy.CountingNet`)."""

from __future__ import annotations

import cv2
import numpy as np

#: default largest input side: 960 keeps 1080p sources at 960x540 (an exact 2x downscale,
#: the cheapest resize) and leaves 768x576 CCTV frames at native size
DEFAULT_MAX_SIDE = 960


def plan_input_size(height: int, width: int, max_side: int | None, multiple: int) -> tuple[int, int]:
    """Model input (height, width) for a frame: scaled so the longer side is at most
    ``max_side`` (never upscaled), then rounded down to a multiple of ``multiple``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    scale = 1.0
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
    h = max(multiple, int(round(height * scale)) // multiple * multiple)
    w = max(multiple, int(round(width * scale)) // multiple * multiple)
    return h, w


def prepare_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 HxWx3 BGR frame to ``size`` = (height, width) with area interpolation."""
    h, w = size
    if image.shape[0] == h and image.shape[1] == w:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
