"""Hand-over of decoded frames from a reader thread to the scheduler.

Two policies behind one interface:

* :class:`LatestSlot` (cameras): capacity 1-2; a full slot drops its *oldest* frame, so the
  consumer always gets recent frames and latency never grows. Drops are counted.
* :class:`FifoSlot` (files): a bounded FIFO whose :meth:`put` blocks while full, so no frame
  is ever lost and a replay is deterministic.

Both are thread-safe; :meth:`close` wakes any blocked producer.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from streamcount.messages import Frame


class FrameSlot(Protocol):
    """What a reader puts frames into and the scheduler takes them from."""

    lossless: bool
    dropped: int
    put_count: int

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        ...

    def put(self, frame: Frame) -> bool:
        """Hand over a frame; False once the slot is closed (the producer should stop)."""
        ...

    def take(self) -> Frame | None:
        """The next frame for the consumer, or None when empty (never blocks)."""
        ...

    def clear(self) -> int:
        """Discard queued frames (counted as dropped); how many were discarded."""
        ...

    def close(self) -> None:
        """Refuse further frames and wake a blocked producer."""
        ...

    def __len__(self) -> int: ...


class _SlotBase:
    def __init__(self, capacity: int, on_put: Callable[[], None] | None) -> None:
        if capacity < 1:
            raise ValueError(f"slot capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._on_put = on_put
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)

    def clear(self) -> int:
        with self._cond:
            n = len(self._frames)
            self._frames.clear()
            self.dropped += n
            self._cond.notify_all()
            return n

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _notify(self) -> None:
        if self._on_put is not None:
            self._on_put()


class LatestSlot(_SlotBase):
    """Latest-frame-wins slot for live sources (``lossless = False``).

    Args:
        capacity: frames held (1 or 2 is typical); a put into a full slot drops the oldest.
        on_put: called after every accepted frame (e.g. to wake the scheduler).

    :meth:`take` returns the newest frame and drops any older ones.
    """

    lossless = False

    def __init__(self, capacity: int = 1, on_put: Callable[[], None] | None = None) -> None:
        super().__init__(capacity, on_put)

    def put(self, frame: Frame) -> bool:
        with self._cond:
            if self._closed:
                return False
            while len(self._frames) >= self.capacity:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self.put_count += 1
        self._notify()
        return True

    def take(self) -> Frame | None:
        with self._cond:
            if not self._frames:
                return None
            frame = self._frames.pop()
            self.dropped += len(self._frames)
            self._frames.clear()
            return frame


class FifoSlot(_SlotBase):
    """Bounded lossless FIFO for files (``lossless = True``): :meth:`put` blocks while full.

    Args:
        capacity: frames queued ahead of the consumer.
        on_put: called after every accepted frame.
    """

    lossless = True

    def __init__(self, capacity: int = 4, on_put: Callable[[], None] | None = None) -> None:
        super().__init__(capacity, on_put)

    def put(self, frame: Frame, timeout: float | None = None) -> bool:
        """Queue a frame, waiting while the FIFO is full (up to ``timeout`` seconds if given).

        Returns False when the slot is closed, or when ``timeout`` passed while full.
        """
        with self._cond:
            ok = self._cond.wait_for(lambda: self._closed or len(self._frames) < self.capacity,
                                     timeout)
            if self._closed or not ok:
                return False
            self._frames.append(frame)
            self.put_count += 1
        self._notify()
        return True

    def take(self) -> Frame | None:
        with self._cond:
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame
