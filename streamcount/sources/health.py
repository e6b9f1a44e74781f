"""Per-camera stream health: can this camera's counts be trusted right now?

A count is only as good as the picture. A camera is *unhealthy* when it is offline (the reader
is connecting, reconnecting, stopped or failed), stalled (streaming but no frame for
``stall_s``), black (mean brightness below ``black_level``), uniform (brightness spread below
``uniform_std``: a lens cap, a grey "no signal" card) or frozen (the picture has not changed for
``frozen_s``: an encoder repeating its last frame). While unhealthy, the service publishes the
counts as ``unknown`` with :attr:`StreamHealth.reason` and suppresses alert evaluation.

Frame checks run on a small grey thumbnail (``THUMB_WIDTH`` wide), so they cost well under a
millisecond per checked frame.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

import cv2
import numpy as np

#: width of the grey thumbnail frame checks use
THUMB_WIDTH = 64

#: largest thumbnail difference (grey levels) between "unchanged" frames: re-encoding a
#: still picture changes it by up to ~4 levels at a keyframe; any real motion by 50+
DEFAULT_FROZEN_DIFF = 6.0

#: reader states in which frames flow (see :class:`streamcount.sources.reader.SourceState`)
_ONLINE_STATES = frozenset({"streaming"})


class _HealthLike(Protocol):
    stall_s: float
    black_level: float
    uniform_std: float
    frozen_s: float


def thumbnail(image: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """A small float32 grey version of a BGR uint8 frame (area-averaged)."""
    h, w = image.shape[:2]
    tw = min(width, w)
    th = max(1, int(round(h * tw / w)))
    small = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)


class StreamHealth:
    """Health of one camera's stream, fed by reader status changes and checked frames.

    Args:
        stall_s: a streaming camera with no frame for this long is stalled.
        black_level: mean grey level (0-255) below which a frame is black.
        uniform_std: grey standard deviation below which a frame is uniform.
        frozen_s: a picture unchanged for this long (media seconds for files, wall seconds for
            cameras) is frozen; 0 disables the check.
        frozen_diff: largest per-pixel thumbnail difference (grey levels) still counted as
            "unchanged" (absorbs re-encoding noise).

    Thread-safe: the reader thread reports states, the scheduler thread checks frames.

    Example:
        >>> h = StreamHealth(stall_s=10, black_level=8, uniform_std=3, frozen_s=30)
        >>> h.set_source("streaming")
        >>> h.check_frame(np.zeros((36, 64, 3), np.uint8), ts=0.0)
        'black frame'
    """

    def __init__(self, stall_s: float = 10.0, black_level: float = 8.0,
                 uniform_std: float = 3.0, frozen_s: float = 10.0,
                 frozen_diff: float = DEFAULT_FROZEN_DIFF) -> None:
        self.stall_s = float(stall_s)
        self.black_level = float(black_level)
        self.uniform_std = float(uniform_std)
        self.frozen_s = float(frozen_s)
        self.frozen_diff = float(frozen_diff)
        self._lock = threading.Lock()
        self._source_state = "connecting"
        self._source_reason: str | None = None
        self._stalled = False
        self._frame_reason: str | None = None
        self._ref: np.ndarray | None = None  # first thumbnail of the current unchanged run
        self._ref_ts = 0.0

    @classmethod
    def from_config(cls, cfg: _HealthLike) -> StreamHealth:
        """From a :class:`~streamcount.config.schema.HealthConfig` (``frozen_diff`` is used
        when the config has it, else the default)."""
        return cls(stall_s=cfg.stall_s, black_level=cfg.black_level,
                   uniform_std=cfg.uniform_std, frozen_s=cfg.frozen_s,
                   frozen_diff=getattr(cfg, "frozen_diff", DEFAULT_FROZEN_DIFF))

    # -- inputs ----------------------------------------------------------------------------------

    def set_source(self, state: str, reason: str | None = None) -> None:
        """Record the reader's state (a ``SourceState`` value) and its reason."""
        with self._lock:
            self._source_state = str(state)
            self._source_reason = reason
            self._stalled = False
            if state not in _ONLINE_STATES:
                self._ref = None  # a frozen run does not survive a reconnect
                self._frame_reason = None

    def check_stall(self, last_frame_age_s: float | None) -> bool:
        """Update the stall flag from the age of the reader's last frame; True when stalled."""
        with self._lock:
            self._stalled = (self._source_state in _ONLINE_STATES
                             and last_frame_age_s is not None
                             and last_frame_age_s > self.stall_s)
            return self._stalled

    def check_frame(self, image: np.ndarray, ts: float) -> str | None:
        """Check one frame (BGR uint8); returns the frame's problem, or None when it is fine.

        ``ts`` is the frame's time (media time for files, wall time for cameras).
        """
        thumb = thumbnail(image)
        mean = float(thumb.mean())
        std = float(thumb.std())
        with self._lock:
            reason: str | None = None
            if mean < self.black_level:
                reason = "black frame"
            elif std < self.uniform_std:
                reason = "uniform frame"
            if self.frozen_s > 0:
                frozen_for = self._frozen_for(thumb, ts)
                if reason is None and frozen_for >= self.frozen_s:
                    reason = f"frozen video ({frozen_for:.0f} s unchanged)"
            self._frame_reason = reason
            return reason

    def _frozen_for(self, thumb: np.ndarray, ts: float) -> float:
        ref = self._ref
        if (ref is None or ref.shape != thumb.shape or ts < self._ref_ts
                or float(np.abs(thumb - ref).max()) > self.frozen_diff):
            self._ref, self._ref_ts = thumb, ts
            return 0.0
        return ts - self._ref_ts

    # -- outputs ---------------------------------------------------------------------------------

    @property
    def reason(self) -> str | None:
        """Why the camera's counts cannot be trusted (None when healthy)."""
        with self._lock:
            if self._source_state not in _ONLINE_STATES:
                why = self._source_state
                return f"offline ({why}: {self._source_reason})" if self._source_reason \
                    else f"offline ({why})"
            if self._stalled:
                return f"stalled (no frame for {self.stall_s:g} s)"
            return self._frame_reason

    @property
    def is_healthy(self) -> bool:
        """Whether counts can be trusted."""
        return self.reason is None


class RateMeter:
    """Events per second over a sliding window (decode fps, processed fps).

    Example:
        >>> m = RateMeter(window_s=2.0)
        >>> for i in range(11): m.tick(i * 0.1)
        >>> round(m.rate(1.0), 1)
        10.0
    """

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = float(window_s)
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float) -> None:
        """Record one event at time ``now`` (monotonic seconds)."""
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

    def rate(self, now: float) -> float:
        """Events per second over the window ending at ``now`` (0 when idle)."""
        with self._lock:
            self._trim(now)
            n = len(self._times)
            if n < 2:
                return 0.0
            span = max(now - self._times[0], self._times[-1] - self._times[0])
            return (n - 1) / span if span > 0 else 0.0
