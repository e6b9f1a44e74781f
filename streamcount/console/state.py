"""What the operator console shows that the rest of the service does not keep: each camera's
latest frame and density map, a bounded count history per region and the recent alert events.

:class:`ConsoleState` is an event-bus sink (count updates, alerts) and receives the latest
processed frame and density map of each camera from the scheduler thread
(:meth:`ConsoleState.set_frame`: a reference is stored, no copy; the JPEG is encoded when a
browser asks for it), with the boxes of the people its counting method counted by detection
(drawn over the frame on the camera page).

History is at most one point per ``HISTORY_STEP_S`` per region and at most ``HISTORY_S``
seconds long (an hour by default): ``3600`` points per region at most, whatever the fps.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamcount.engine.preprocess import DENSITY_STRIDE, input_coverage
from streamcount.messages import AlertEvent, CountUpdate, Frame
from streamcount.regions import region_mask

#: how much count history is kept per region (s)
HISTORY_S = 3600.0
#: at most one history point per region this often (s)
HISTORY_STEP_S = 1.0
#: recent alert events kept for the console (all cameras)
ALERTS_KEPT = 200
#: JPEG quality of the latest-frame endpoint
JPEG_QUALITY = 80


@dataclass
class _Latest:
    frame: Frame
    density: np.ndarray
    boxes: np.ndarray | None = None  # K x 4 frame pixels, people counted by detection
    jpeg: bytes | None = None


@dataclass
class _Series:
    points: deque[tuple[float, float | None]] = field(
        default_factory=lambda: deque(maxlen=int(HISTORY_S / HISTORY_STEP_S)))

    def add(self, ts: float, count: float | None) -> None:
        if self.points and ts - self.points[-1][0] < HISTORY_STEP_S:
            if count is None or self.points[-1][1] is None:
                self.points[-1] = (self.points[-1][0], count)  # keep state changes visible
            return
        self.points.append((ts, count))
        while self.points and self.points[0][0] < ts - HISTORY_S:
            self.points.popleft()


class ConsoleState:
    """Latest frames and density maps, count history and recent alerts (thread-safe)."""

    name = "console"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, _Latest] = {}
        self._history: dict[str, dict[str, _Series]] = {}
        self._alerts: deque[AlertEvent] = deque(maxlen=ALERTS_KEPT)

    # -- inputs ----------------------------------------------------------------------------------

    def set_frame(self, camera: str, frame: Frame, density: np.ndarray,
                  boxes: np.ndarray | None = None) -> None:
        """The latest processed frame of ``camera``, its density map and the boxes (K x 4
        ``x1, y1, x2, y2`` frame pixels) of the people counted by detection, None when the frame
        was counted by density alone (scheduler thread)."""
        with self._lock:
            self._latest[camera] = _Latest(frame, density, boxes)

    def handle(self, event: object) -> None:
        """Bus events: count updates feed the history, alert events the alert list."""
        if isinstance(event, CountUpdate):
            with self._lock:
                series = self._history.setdefault(event.camera, {}).setdefault(
                    event.region, _Series())
                series.add(event.ts, None if event.count is None else round(event.count, 2))
        elif isinstance(event, AlertEvent):
            with self._lock:
                self._alerts.append(event)

    def forget_camera(self, camera: str) -> None:
        """Drop a removed camera's frame and history."""
        with self._lock:
            self._latest.pop(camera, None)
            self._history.pop(camera, None)

    def close(self) -> None:
        """Nothing to release."""

    # -- views -----------------------------------------------------------------------------------

    def jpeg(self, camera: str) -> bytes | None:
        """The latest processed frame of ``camera`` as JPEG (None before the first)."""
        with self._lock:
            latest = self._latest.get(camera)
        if latest is None:
            return None
        if latest.jpeg is None:
            ok, buf = cv2.imencode(".jpg", latest.frame.image,
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            latest.jpeg = buf.tobytes() if ok else b""
        return latest.jpeg or None

    def density(self, camera: str) -> dict[str, object] | None:
        """The latest density map: ``{width, height, max, sum, values, boxes}`` with ``values``
        the row-major cells scaled to 0-255 of ``max`` (a heat map needs no more precision) and
        ``boxes`` the people counted by detection as ``[x1, y1, x2, y2]`` fractions of the
        frame (None: counted by density alone)."""
        with self._lock:
            latest = self._latest.get(camera)
        if latest is None:
            return None
        d = np.clip(latest.density, 0.0, None)
        top = float(d.max()) if d.size else 0.0
        scaled = (d / top * 255.0 if top > 0 else d * 0).round().astype(np.uint8)
        return {"width": int(d.shape[1]), "height": int(d.shape[0]), "max": top,
                "sum": float(d.sum()), "ts": latest.frame.wall_ts,
                "frame": [int(latest.frame.image.shape[1]), int(latest.frame.image.shape[0])],
                "coverage": list(_coverage(latest)[::-1]),
                "values": scaled.reshape(-1).tolist(),
                "boxes": None if latest.boxes is None else _relative(latest.boxes,
                                                                     latest.frame.image.shape)}

    def preview(self, camera: str, polygon: Sequence[tuple[float, float]]) -> float | None:
        """The count a (validated, relative) polygon would have on the latest density map."""
        with self._lock:
            latest = self._latest.get(camera)
        if latest is None:
            return None
        mask = region_mask(polygon, *latest.density.shape, coverage=_coverage(latest))
        return float((mask.astype(np.float64) * latest.density).sum())

    def history(self, camera: str) -> dict[str, list[tuple[float, float | None]]]:
        """``{region: [(ts, smoothed count or None), ...]}`` of the last hour."""
        with self._lock:
            return {r: list(s.points) for r, s in self._history.get(camera, {}).items()}

    def alerts(self, camera: str | None = None, limit: int = 50) -> list[dict[str, object]]:
        """The most recent alert events (newest first), of one camera or all."""
        with self._lock:
            events = [e for e in self._alerts if camera is None or e.camera == camera]
        return [{"id": e.id, "camera": e.camera, "region": e.region, "level": e.level,
                 "previous": e.previous, "count": e.count, "threshold": e.threshold,
                 "ts": e.ts, "renotify": e.renotify} for e in reversed(events[-limit:])]


def _coverage(latest: _Latest) -> tuple[float, float]:
    """(vertical, horizontal) fraction of the frame its density map covers (from the top-left:
    the model input is the frame resized, then cropped to whole density cells)."""
    d = latest.density
    return input_coverage(latest.frame.image.shape[:2],
                          (d.shape[0] * DENSITY_STRIDE, d.shape[1] * DENSITY_STRIDE))


def _relative(boxes: np.ndarray, shape: tuple[int, ...]) -> list[list[float]]:
    """Pixel boxes as ``[x1, y1, x2, y2]`` fractions of a frame of ``shape`` (4 decimals)."""
    h, w = shape[:2]
    scaled = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / [w, h, w, h]
    return np.clip(scaled, 0.0, 1.0).round(4).tolist()
