"""Frame resizing in torch, on whatever device the frames are on.

The CPU path resizes each frame with ``cv2.resize(..., INTER_AREA)``
(:func:`streamcount.engine.preprocess.prepare_frame`) before the batch reaches a backend. GPU
backends instead upload the decoded ``uint8`` frames as they are (a 1080p BGR frame is 6 MB, a
third of its float32 size) and resize the whole batch on the device with
:func:`resize_frames`. Colour conversion and mean/std normalisation stay inside the model graph
(:class:`streamcount.models.deploy.CountingNet`), exactly as on the CPU path: resizing is linear
and its weights sum to one, so resizing before or after that per-pixel affine map gives the same
result.

``area`` mode is ``F.interpolate(mode="area")`` (box averaging); for integer downscale factors
(1080p -> 540p) it equals OpenCV's ``INTER_AREA``, for fractional factors it is a close
approximation. ``bilinear`` mode uses ``antialias=True`` when downscaling (a triangle filter
widened to the scale factor), which is smoother than a box. Upscaling (never planned by
:func:`~streamcount.engine.preprocess.plan_input_size`) always uses plain bilinear, as
``INTER_AREA`` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamcount.engine.preprocess import resized_size

#: resize modes accepted by :func:`resize_frames`
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear")


def check_resize_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`RESIZE_MODES`, else ``ValueError``."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r} (known: {', '.join(RESIZE_MODES)})")
    return mode


def resize_frames(frames: torch.Tensor, size: tuple[int, int], mode: str = "area") -> torch.Tensor:
    """Resize a batch of frames ``N x H x W x C`` (``uint8`` or float, 0-255) by one factor
    and crop it at the bottom and right to ``size`` = (height, width) (see
    :func:`streamcount.engine.preprocess.resized_size`).

    Returns ``float32`` ``N x h x w x C`` in 0-255 (not rounded), on the input's device and
    contiguous in NHWC, i.e. the input :class:`~streamcount.models.deploy.CountingNet` takes.
    A batch already at ``size`` is only converted to float.
    """
    check_resize_mode(mode)
    if frames.dim() != 4:
        raise ValueError(f"expected frames N x H x W x C, got shape {tuple(frames.shape)}")
    th, tw = int(size[0]), int(size[1])
    if th <= 0 or tw <= 0:
        raise ValueError(f"bad target size {tw}x{th}")
    _, h, w, _ = frames.shape
    # NHWC memory viewed as NCHW (channels_last strides): no copy before the float conversion
    x = frames.permute(0, 3, 1, 2).float()
    if (h, w) != (th, tw):
        # one factor for both axes, then the crop to ``size``, exactly as prepare_frame
        rh, rw = resized_size((h, w), (th, tw))
        if (rh, rw) != (h, w):
            downscale = rh <= h and rw <= w
            if mode == "area" and downscale:
                x = F.interpolate(x, size=(rh, rw), mode="area")
            else:
                x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False,
                                  antialias=rh < h or rw < w)
        x = x[:, :, :th, :tw]
    return x.permute(0, 2, 3, 1).contiguous()
