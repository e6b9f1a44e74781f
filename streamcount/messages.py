"""Messages passed between stages: frozen, typed, validated at construction.

They live below every stage (sources, pipeline, sinks, console), so that sources and sinks never
import the pipeline for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame. ``image`` is uint8 H x W x 3 BGR; ``pts_s`` media time in seconds."""

    camera: str
    index: int
    pts_s: float
    wall_ts: float
    image: np.ndarray = field(repr=False)
    file: str | None = None  # for image folders: the image's file name

    def __post_init__(self) -> None:
        im = self.image
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"Frame.image must be uint8 HxWx3, got {im.dtype} {im.shape}")


@dataclass(frozen=True)
class DensityResult:
    """A frame's density map (float32, h x w at the model's stride) and its input size."""

    frame: Frame
    density: np.ndarray = field(repr=False)
    input_size: tuple[int, int]  # (height, width) the model saw

    def __post_init__(self) -> None:
        if self.density.ndim != 2 or self.density.dtype != np.float32:
            raise ValueError(f"density must be float32 2-D, got {self.density.dtype} "
                             f"{self.density.shape}")


@dataclass(frozen=True)
class RegionCounts:
    """Raw per-region counts of one frame (``all`` is the whole frame)."""

    camera: str
    index: int
    pts_s: float
    wall_ts: float
    counts: dict[str, float]
    file: str | None = None
    #: how the frame was counted: "detect", "density" or "hybrid" (None: not recorded)
    method: str | None = None


class CountState(str, Enum):
    """Whether a count can be trusted."""

    OK = "ok"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CountUpdate:
    """Smoothed count of one region after one frame."""

    camera: str
    region: str
    ts: float
    raw: float | None
    count: float | None
    state: CountState
    reason: str | None = None
    level: str | None = None  # current alert level, None when normal
    #: people/m² (the smoothed count over the region's floor area); None when uncalibrated
    #: or unknown
    density: float | None = None
    #: level-of-service letter of ``density`` (A-F), None when there is no density
    los: str | None = None
    #: the region's floor area (m²), None when uncalibrated
    area_m2: float | None = None
    #: how the frame was counted: "detect", "density" or "hybrid" (None: unknown count, or
    #: a service without a counting method)
    method: str | None = None


def region_state(u: CountUpdate) -> dict[str, object]:
    """A region's entry in the state API: count, raw, state, reason, level, ts, method, and
    density, los and area_m2 for a region with a floor area."""
    out: dict[str, object] = {"count": u.count, "raw": u.raw, "state": u.state.value,
                              "reason": u.reason, "level": u.level, "ts": u.ts,
                              "method": u.method}
    if u.area_m2 is not None:
        out.update(density=u.density, los=u.los, area_m2=u.area_m2)
    return out


@dataclass(frozen=True)
class AlertEvent:
    """One alert state transition of a region rule. ``id`` is unique."""

    id: str
    camera: str
    region: str
    level: str
    previous: str
    count: float | None
    threshold: float | None
    ts: float
    renotify: bool = False  # a periodic reminder of the current level, not a transition


@dataclass(frozen=True)
class StatusEvent:
    """A camera's stream state changed."""

    camera: str
    state: str
    reason: str | None
    ts: float
    fps: float | None = None


@dataclass(frozen=True)
class StatsEvent:
    """Periodic service statistics (published on ``<prefix>/stats``).

    ``cameras`` maps a camera name to its figures (fps, dropped frames, state...);
    ``service`` holds process-wide figures (inference ms, batch size, queue depths...).
    Values are JSON scalars.
    """

    ts: float
    uptime_s: float
    cameras: dict[str, dict[str, float | int | str | None]] = field(default_factory=dict)
    service: dict[str, float | int | str | None] = field(default_factory=dict)
