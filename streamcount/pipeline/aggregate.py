"""Per-region aggregation: smoothing of raw counts, alert evaluation, health gating.

Smoothers (one per region):

- :class:`EmaSmoother`: exponential moving average in *time* (irregular frame intervals are
  fine) with separate rise and fall time constants, like a stabiliser that follows a growing
  crowd quickly and lets it drain slowly: ``alpha = 1 - exp(-dt / tau)``, ``tau = rise_s``
  while the raw count is above the smoothed value, else ``fall_s``.
- :class:`MedianSmoother`: sliding median of the last ``window`` raw counts (rejects single
  frame spikes).
- :class:`NoSmoother`: the raw count.

:class:`RegionAggregator` ties a smoother to an :class:`~streamcount.pipeline.alerts.AlertMachine`.
A raw count of ``None`` means the stream is unhealthy: the update says ``unknown`` with the
reason, the smoother is **reset** (stale values must not leak into counts after recovery) and
alert rules are not evaluated.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from streamcount.config.schema import AlertRule, SmoothingConfig
from streamcount.pipeline.alerts import NORMAL, AlertMachine, EventIds
from streamcount.floor import los_letter
from streamcount.messages import AlertEvent, CountState, CountUpdate


class Smoother(Protocol):
    """Turns a series of raw counts into a smoothed series."""

    def update(self, raw: float, ts: float) -> float:
        """Add the raw count observed at ``ts`` (s); return the smoothed count."""
        ...

    def reset(self) -> None:
        """Forget all history."""
        ...


class NoSmoother:
    """Returns the raw count."""

    def update(self, raw: float, ts: float) -> float:
        """The raw count."""
        return raw

    def reset(self) -> None:
        """Nothing to forget."""


class EmaSmoother:
    """Time-based EMA with separate rise/fall time constants (seconds; 0 = follow at once).

    Example:
        >>> s = EmaSmoother(rise_s=2, fall_s=5)
        >>> s.update(0, 0.0), round(s.update(10, 2.0), 3)
        (0.0, 6.321)
    """

    def __init__(self, rise_s: float = 2.0, fall_s: float = 5.0) -> None:
        self.rise_s = rise_s
        self.fall_s = fall_s
        self._value: float | None = None
        self._ts = 0.0

    def update(self, raw: float, ts: float) -> float:
        """Add ``raw`` at ``ts``; the smoothed count."""
        if self._value is None:
            self._value, self._ts = float(raw), ts
            return self._value
        dt = max(0.0, ts - self._ts)
        self._ts = max(self._ts, ts)
        tau = self.rise_s if raw > self._value else self.fall_s
        alpha = 1.0 if tau <= 0 else 1.0 - math.exp(-dt / tau)
        self._value += alpha * (raw - self._value)
        return self._value

    def reset(self) -> None:
        """Forget the current value."""
        self._value = None


class MedianSmoother:
    """Median of the last ``window`` raw counts."""

    def __init__(self, window: int = 5) -> None:
        if window < 1:
            raise ValueError(f"median window must be >= 1, got {window}")
        self._values: deque[float] = deque(maxlen=window)

    def update(self, raw: float, ts: float) -> float:
        """Add ``raw``; the median of the window."""
        self._values.append(float(raw))
        return float(statistics.median(self._values))

    def reset(self) -> None:
        """Empty the window."""
        self._values.clear()


def make_smoother(cfg: SmoothingConfig) -> Smoother:
    """The smoother ``cfg`` describes."""
    if cfg.method == "ema":
        return EmaSmoother(cfg.rise_s, cfg.fall_s)
    if cfg.method == "median":
        return MedianSmoother(cfg.window)
    return NoSmoother()


class RegionAggregator:
    """Smoothing + alerts + health gating for one region.

    Args:
        camera: camera name.
        region: region name.
        smoothing: the effective smoothing of the region.
        rules: its alert rules.
        ids: shared alert id generator (optional).
        area_m2: the region's floor area: updates carry ``density`` (people/m²) and its
            ``los`` letter, and density rules become count rules (thresholds x area).
        los_table: the LoS table (:data:`~streamcount.floor.LOS_TABLES`).
    """

    def __init__(self, camera: str, region: str, smoothing: SmoothingConfig,
                 rules: Sequence[AlertRule] = (), ids: EventIds | None = None,
                 area_m2: float | None = None, los_table: str = "walkway") -> None:
        self.camera = camera
        self.region = region
        self.area_m2 = area_m2
        self.los_table = los_table
        self.smoother = make_smoother(smoothing)
        self.alerts = AlertMachine(camera, region, [r.in_counts(area_m2) for r in rules], ids)

    def _density(self, count: float | None) -> dict[str, float | str | None]:
        if self.area_m2 is None:
            return {}
        if count is None:
            return {"area_m2": self.area_m2}
        density = max(0.0, count) / self.area_m2
        return {"density": density, "los": los_letter(density, self.los_table),
                "area_m2": self.area_m2}

    def update(self, raw: float | None, ts: float, reason: str | None = None,
               method: str | None = None) -> tuple[CountUpdate, list[AlertEvent]]:
        """Feed one raw count (``None`` = the stream is unhealthy, ``reason`` says why;
        ``method`` how it was counted: detect, density or hybrid).

        Returns:
            The region's :class:`CountUpdate` and the alert events it caused.
        """
        if raw is None or not math.isfinite(raw):
            self.smoother.reset()
            events = self.alerts.update(None, ts)
            update = CountUpdate(camera=self.camera, region=self.region, ts=ts, raw=None,
                                 count=None, state=CountState.UNKNOWN,
                                 reason=reason or ("no count" if raw is None
                                                   else "non-finite count"),
                                 level=self._level(), **self._density(None))
            return update, events
        count = self.smoother.update(float(raw), ts)
        events = self.alerts.update(count, ts)
        update = CountUpdate(camera=self.camera, region=self.region, ts=ts, raw=float(raw),
                             count=count, state=CountState.OK, reason=None,
                             level=self._level(), method=method, **self._density(count))
        return update, events

    def _level(self) -> str | None:
        state = self.alerts.state
        return None if state == NORMAL else state
