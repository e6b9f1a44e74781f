"""Per-camera live CSV: the same ``frame,time_s,region,count`` rows as ``streamcount count``'s
``counts.csv``, appended while the service runs, one file ``<csv_dir>/<camera>.csv`` per
camera with ``csv: true``.

``frame`` is the reader's decoded-frame index, ``time_s`` the frame's media time (files:
position in the file, continuing across loops; cameras: seconds since the reader started) and
``count`` the raw count of the processed frame (``all`` is the whole frame). Frames whose
stream was unhealthy have no rows. An existing file is appended to (its header is kept), so a
restart continues the series.

The sink runs on its own event-bus thread and receives
:class:`~streamcount.messages.RegionCounts`; other events and cameras that were not
added are ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from streamcount.messages import RegionCounts
from streamcount.sinks.csvsink import HEADER

log = logging.getLogger(__name__)


class _CameraFile:
    def __init__(self, path: Path, regions: Sequence[str]) -> None:
        self.path = path
        self.regions = tuple(regions)
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        self.fh: TextIO = path.open("a", encoding="utf-8", newline="")
        if fresh:
            self.fh.write(",".join(HEADER) + "\n")
            self.fh.flush()


class LiveCsvSink:
    """Appends the counts of the cameras added with :meth:`add_camera` to their CSV files.

    Args:
        directory: where ``<camera>.csv`` files go (created).
        flush_s: flush each file at least this often (seconds).
    """

    name = "csv"

    def __init__(self, directory: str | Path, *, flush_s: float = 1.0) -> None:
        self.directory = Path(directory)
        self.flush_s = flush_s
        self._files: dict[str, _CameraFile] = {}
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def path_of(self, camera: str) -> Path:
        """The CSV file of ``camera``."""
        return self.directory / f"{camera}.csv"

    def add_camera(self, camera: str, regions: Sequence[str]) -> None:
        """Start writing ``camera``'s counts (``regions`` in row order, ``all`` last)."""
        with self._lock:
            old = self._files.pop(camera, None)
            if old is not None:
                old.fh.close()
            self._files[camera] = _CameraFile(self.path_of(camera), regions)

    def remove_camera(self, camera: str) -> None:
        """Stop writing ``camera``'s counts and close its file."""
        with self._lock:
            f = self._files.pop(camera, None)
            if f is not None:
                f.fh.close()

    def handle(self, event: object) -> None:
        """Write the rows of a :class:`RegionCounts` of an added camera."""
        if not isinstance(event, RegionCounts):
            return
        with self._lock:
            f = self._files.get(event.camera)
            if f is None:
                return
            lines = [f"{event.index},{event.pts_s:.3f},{name},{event.counts[name]:.3f}\n"
                     for name in f.regions if name in event.counts]
            f.fh.write("".join(lines))
            f.rows += len(lines)
            now = time.monotonic()
            if now - self._last_flush >= self.flush_s:
                for g in self._files.values():
                    g.fh.flush()
                self._last_flush = now

    def close(self) -> None:
        """Flush and close every file."""
        with self._lock:
            for camera, f in self._files.items():
                f.fh.close()
                log.debug("camera %s: wrote %d CSV rows to %s", camera, f.rows, f.path)
            self._files.clear()
