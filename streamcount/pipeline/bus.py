"""The event bus: fans pipeline events out to sinks, each on its own thread.

``publish`` never blocks the pipeline. Every sink has a bounded queue (``queue_size``); when
it is full:

- *droppable* events (counts, stats: anything that is not an :class:`AlertEvent` or a
  :class:`StatusEvent`) make room by dropping the **oldest droppable** event in that queue
  (newer counts supersede older ones), or are dropped themselves if the queue holds only
  important events;
- :class:`AlertEvent` and :class:`StatusEvent` are **never dropped**: they are queued beyond
  the bound (alerts are rare; blocking inference on a stuck sink would be worse), with one
  warning per overflow episode.

A sink whose ``handle`` raises is logged (with its name and the event type) and keeps
receiving events. ``close`` lets every sink drain its queue, then calls ``sink.close()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from streamcount.messages import AlertEvent, StatusEvent
from streamcount.sinks.base import Sink

log = logging.getLogger(__name__)

IMPORTANT_TYPES: tuple[type, ...] = (AlertEvent, StatusEvent)


def is_droppable(event: object) -> bool:
    """Whether a full queue may drop ``event`` (everything but alerts and status changes)."""
    return not isinstance(event, IMPORTANT_TYPES)


@dataclass(frozen=True)
class SinkStats:
    """Counters of one sink's queue."""

    name: str
    queued: int
    handled: int
    dropped: int
    errors: int
    alive: bool


class _Worker:
    """One sink's queue and thread."""

    def __init__(self, sink: Sink, queue_size: int) -> None:
        self.sink = sink
        self.name = str(getattr(sink, "name", type(sink).__name__))
        self.queue_size = queue_size
        self._q: deque[object] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._overflowing = False
        self.handled = self.dropped = self.errors = 0
        self._thread = threading.Thread(target=self._run, name=f"sink:{self.name}",
                                        daemon=True)
        self._thread.start()

    def put(self, event: object) -> None:
        with self._cond:
            if self._closing:
                return
            if len(self._q) >= self.queue_size:
                if not self._make_room(event):
                    self.dropped += 1
                    return
            self._q.append(event)
            self._cond.notify()

    def _make_room(self, event: object) -> bool:
        """Drop the oldest droppable event; False if ``event`` itself must be dropped."""
        for i, old in enumerate(self._q):
            if is_droppable(old):
                del self._q[i]
                self.dropped += 1
                return True
        if is_droppable(event):
            return False
        if not self._overflowing:
            self._overflowing = True
            log.warning("sink %s is not keeping up: its queue holds %d alert/status events; "
                        "queueing beyond the bound", self.name, len(self._q))
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._q and not self._closing:
                    self._cond.wait()
                if not self._q:
                    break
                event = self._q.popleft()
                if len(self._q) < self.queue_size // 2:
                    self._overflowing = False
            try:
                self.sink.handle(event)
                self.handled += 1
            except Exception:
                self.errors += 1
                log.exception("sink %s failed on %s; continuing", self.name,
                              type(event).__name__)
        try:
            self.sink.close()
        except Exception:
            log.exception("sink %s failed to close", self.name)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()

    def join(self, timeout: float | None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stats(self) -> SinkStats:
        with self._cond:
            return SinkStats(self.name, len(self._q), self.handled, self.dropped, self.errors,
                             self._thread.is_alive())


class EventBus:
    """Delivers each published event to every sink, in publication order per sink.

    Args:
        queue_size: bound of each sink's queue (droppable events; see the module docstring).

    Example:
        >>> class Printer:
        ...     name = "print"
        ...     def handle(self, event): print(event)
        ...     def close(self): pass
        >>> bus = EventBus()
        >>> bus.add_sink(Printer())
        >>> bus.publish("hello")
        >>> bus.close()
        hello
        True
    """

    def __init__(self, queue_size: int = 1000) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.queue_size = queue_size
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def add_sink(self, sink: Sink) -> None:
        """Start delivering events to ``sink`` (on a new thread)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the event bus is closed")
            self._workers.append(_Worker(sink, self.queue_size))

    @property
    def sinks(self) -> list[Sink]:
        """The sinks, in the order they were added."""
        return [w.sink for w in self._workers]

    def publish(self, event: object) -> None:
        """Queue ``event`` for every sink; never blocks. Ignored after ``close``."""
        with self._lock:
            workers = list(self._workers) if not self._closed else []
        for w in workers:
            w.put(event)

    def stats(self) -> list[SinkStats]:
        """Queue counters of every sink (for metrics)."""
        return [w.stats() for w in self._workers]

    def close(self, timeout: float | None = 10.0) -> bool:
        """Stop accepting events, let every sink drain its queue and close it.

        Returns:
            True when every sink finished within ``timeout`` seconds (all together).
        """
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for w in workers:
            w.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for w in workers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not w.join(left):
                log.warning("sink %s did not finish within %.1f s", w.name, timeout or 0)
                ok = False
        return ok
