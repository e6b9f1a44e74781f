"""Input sizes for benchmarks: ``540p``-style names or explicit ``HxW`` (height x width)."""

from __future__ import annotations

import re

#: named sizes (height, width), 16:9
NAMED_SIZES: dict[str, tuple[int, int]] = {
    "360p": (360, 640), "540p": (540, 960), "720p": (720, 1280), "1080p": (1080, 1920),
}


def parse_size(text: str) -> tuple[int, int]:
    """``"540p"`` or ``"HxW"`` (e.g. ``"544x960"``) -> (height, width)."""
    t = text.strip().lower()
    if t in NAMED_SIZES:
        return NAMED_SIZES[t]
    m = re.fullmatch(r"(\d+)x(\d+)", t)
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise ValueError(f"size {text!r} is neither one of {', '.join(NAMED_SIZES)} nor HxW "
                         "(height x width, e.g. 544x960)")
    return int(m.group(1)), int(m.group(2))


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """A comma-separated list of :func:`parse_size` sizes."""
    return [parse_size(p) for p in text.split(",") if p.strip()]


def model_input(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """``size`` rounded down to a legal model input (multiples of ``multiple``)."""
    h, w = size
    return max(multiple, h // multiple * multiple), max(multiple, w // multiple * multiple)


def size_label(size: tuple[int, int]) -> str:
    """``"540x960"`` (height x width, as the CLI takes it)."""
    return f"{size[0]}x{size[1]}"
