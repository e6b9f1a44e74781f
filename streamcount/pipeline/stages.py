"""Overlapping pipeline stages in threads, and where their time goes.

:func:`threaded_map` runs one stage (e.g. inference) on its own thread a few items ahead of
the consumer, so the next batch is inferred while the current one is counted and written:
OpenVINO, OpenCV and PyAV release the GIL, so on a 2-core machine the cores stay busy instead
of idling during the Python parts. Order is kept; an exception in the stage is re-raised in
the consumer; closing the consumer stops the stage.

:class:`StageTimes` accumulates busy seconds per named stage (from any thread) for the
``profile`` section of ``summary.json`` and the benchmark.

Example:
    >>> times = StageTimes()
    >>> list(threaded_map(lambda x: x * x, range(4), times=times, stage="square"))
    [0, 1, 4, 9]
    >>> times.snapshot()["square"]["calls"]
    4
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

_In = TypeVar("_In")
_Out = TypeVar("_Out")
_END = object()


class StageTimes:
    """Busy seconds and call counts per stage name; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._calls: dict[str, int] = {}

    def add(self, stage: str, seconds: float, calls: int = 1) -> None:
        """Account ``seconds`` (and ``calls``) to ``stage``."""
        with self._lock:
            self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds
            self._calls[stage] = self._calls.get(stage, 0) + calls

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        """Time the ``with`` block as one call of ``stage``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def timed(self, stage: str, fn: Callable[..., _Out]) -> Callable[..., _Out]:
        """``fn`` wrapped so that every call is timed as ``stage``."""
        def wrapper(*args: Any, **kwargs: Any) -> _Out:
            with self.time(stage):
                return fn(*args, **kwargs)
        return wrapper

    def snapshot(self, frames: int | None = None) -> dict[str, dict[str, float]]:
        """``{stage: {"seconds", "calls"[, "ms_per_frame"]}}`` in the order stages appeared."""
        with self._lock:
            out: dict[str, dict[str, float]] = {}
            for stage, s in self._seconds.items():
                row: dict[str, float] = {"seconds": round(s, 4), "calls": self._calls[stage]}
                if frames:
                    row["ms_per_frame"] = round(1000 * s / frames, 3)
                out[stage] = row
            return out


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def threaded_map(fn: Callable[[_In], _Out], items: Iterable[_In], *, depth: int = 2,
                 name: str = "stage", times: StageTimes | None = None,
                 stage: str | None = None) -> Iterator[_Out]:
    """``fn(item)`` for each item, computed on a worker thread up to ``depth`` items ahead.

    ``items`` is also consumed on the worker thread. With ``times``, each call of ``fn`` is
    accounted to ``stage`` (default ``name``).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    out: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    call = times.timed(stage or name, fn) if times is not None else fn

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if stop.is_set() or not put(call(item)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(_Failure(e))
            return
        put(_END)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5.0)
        if worker.is_alive():
            log.warning("stage thread %s did not stop within 5 s", name)
