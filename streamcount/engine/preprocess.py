"""Input size policy and frame preparation (resize, then crop; colour and normalisation are in
the model graph, see :class:`streamcount.models.deploy.CountingNet`).

A frame is scaled by one factor ``s`` on both axes (so people keep their shape), then the
bottom rows and right columns that do not fill a whole ``multiple`` (the model's output stride,
8) are cropped off: at most ``multiple - 1`` pixels per axis. Rounding by an anisotropic resize
instead (the first design) blurs every row for the sake of a few: the imported CSRNet teacher's
count of a dense ShanghaiTech A image moved by 14 % on a 3-row resize. The model input -- and so
the density map -- therefore covers the top-left :func:`input_coverage` fraction of the frame,
nearly all of it; :class:`streamcount.regions.RegionCounter` and the overlays map
frame coordinates with that fraction.
"""

from __future__ import annotations

import cv2
import numpy as np

#: default largest input side: 960 keeps 1080p sources at 960x540 (an exact 2x downscale,
#: the cheapest resize) and leaves 768x576 CCTV frames at native size
DEFAULT_MAX_SIDE = 960
#: output stride of the density models (input pixels per density cell; the cards'
#: ``output_stride``), for code that meets a density map without its card
DENSITY_STRIDE = 8


def plan_input_size(height: int, width: int, max_side: int | None, multiple: int) -> tuple[int, int]:
    """Model input (height, width) for a frame: scaled so the longer side is at most
    ``max_side`` (never upscaled), then cropped down to a multiple of ``multiple``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    scale = 1.0
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
    h = max(multiple, int(round(height * scale)) // multiple * multiple)
    w = max(multiple, int(round(width * scale)) // multiple * multiple)
    return h, w


def resized_size(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) a frame of ``frame_hw`` is resized to before the crop to
    ``input_hw``: one scale factor for both axes, the smallest that covers ``input_hw``."""
    fh, fw = int(frame_hw[0]), int(frame_hw[1])
    h, w = int(input_hw[0]), int(input_hw[1])
    if fh <= 0 or fw <= 0 or h <= 0 or w <= 0:
        raise ValueError(f"bad sizes: frame {fw}x{fh}, input {w}x{h}")
    s = max(h / fh, w / fw)
    if s == 1.0:
        return fh, fw
    return max(h, int(round(fh * s))), max(w, int(round(fw * s)))


def input_coverage(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[float, float]:
    """The (vertical, horizontal) fraction of a frame, from its top-left corner, that a model
    input of ``input_hw`` (and so its density map) covers; 1.0 where nothing was cropped."""
    rh, rw = resized_size(frame_hw, input_hw)
    return min(1.0, input_hw[0] / rh), min(1.0, input_hw[1] / rw)


def prepare_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 HxWx3 BGR frame resized (area interpolation, one factor for both axes) and
    cropped at the bottom and right to ``size`` = (height, width); C-contiguous."""
    h, w = size
    if image.shape[0] == h and image.shape[1] == w:
        return image
    rh, rw = resized_size(image.shape[:2], (h, w))
    if (rh, rw) != image.shape[:2]:
        image = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image[:h, :w])
