"""Per-frame region counts as CSV: ``frame,time_s,region,count`` (plus ``method`` when the
counting method is recorded, and ``file`` for image folders), one row per processed frame and
region, ``all`` included."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from streamcount.messages import RegionCounts

log = logging.getLogger(__name__)

HEADER = ("frame", "time_s", "region", "count")
FILE_COLUMN = "file"
METHOD_COLUMN = "method"


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


class CsvSink:
    """Writes ``counts.csv``; rows of a frame are written in one call, and the file is flushed
    at least every ``flush_s`` seconds, so an interrupted run leaves whole frames behind.

    Args:
        path: the CSV file (created, or truncated).
        regions: region names in column order (``all`` last, as the counter reports them).
        with_file: add the ``file`` column (a folder of images).
        flush_s: flush interval in seconds.
        with_method: add the ``method`` column after ``count`` (``detect``, ``density`` or
            ``hybrid``: how the frame was counted).
    """

    def __init__(self, path: str | Path, regions: Sequence[str], *, with_file: bool = False,
                 flush_s: float = 1.0, with_method: bool = False) -> None:
        self.path = Path(path)
        self.regions = tuple(regions)
        self.with_file = with_file
        self.with_method = with_method
        self.flush_s = flush_s
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8", newline="")
        header = (HEADER + ((METHOD_COLUMN,) if with_method else ())
                  + ((FILE_COLUMN,) if with_file else ()))
        self._fh.write(",".join(header) + "\n")
        self._fh.flush()
        self._last_flush = time.monotonic()

    def write(self, counts: RegionCounts) -> None:
        """Append one frame's rows (every region in ``regions``)."""
        tail = f",{_csv_field(counts.file or '')}" if self.with_file else ""
        if self.with_method:
            tail = f",{counts.method or ''}{tail}"
        lines = [f"{counts.index},{counts.pts_s:.3f},{name},{counts.counts[name]:.3f}{tail}\n"
                 for name in self.regions]
        self._fh.write("".join(lines))
        self.rows += len(lines)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_s:
            self._fh.flush()
            self._last_flush = now

    def close(self) -> None:
        """Flush and close the file."""
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()
            log.debug("wrote %d rows to %s", self.rows, self.path)
