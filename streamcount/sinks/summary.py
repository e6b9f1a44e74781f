"""Run summary: per-region statistics of the processed frames, written atomically as JSON."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamcount.messages import RegionCounts


@dataclass
class _RegionStats:
    total: float = 0.0
    frames: int = 0
    max: float = -math.inf
    max_time_s: float | None = None
    max_frame: int | None = None
    max_file: str | None = None

    def add(self, value: float, counts: RegionCounts) -> None:
        self.total += value
        self.frames += 1
        if value > self.max:
            self.max = value
            self.max_time_s = counts.pts_s
            self.max_frame = counts.index
            self.max_file = counts.file

    def as_dict(self) -> dict[str, Any]:
        if not self.frames:
            return {"mean": None, "max": None, "max_time_s": None, "max_frame": None}
        d: dict[str, Any] = {"mean": round(self.total / self.frames, 4),
                             "max": round(self.max, 4),
                             "max_time_s": round(self.max_time_s or 0.0, 3),
                             "max_frame": self.max_frame}
        if self.max_file is not None:
            d["max_file"] = self.max_file
        return d


class SummaryBuilder:
    """Accumulates per-region mean and maximum (with its time and frame) over processed frames."""

    def __init__(self, regions: Sequence[str]) -> None:
        self.regions = tuple(regions)
        self.frames = 0
        self.last_index: int | None = None
        self.last_time_s: float | None = None
        self._stats = {name: _RegionStats() for name in self.regions}

    def add(self, counts: RegionCounts) -> None:
        """Account one frame's counts."""
        for name in self.regions:
            self._stats[name].add(counts.counts[name], counts)
        self.frames += 1
        self.last_index = counts.index
        self.last_time_s = counts.pts_s

    def region_stats(self) -> dict[str, dict[str, Any]]:
        """``{region: {mean, max, max_time_s, max_frame}}`` in region order."""
        return {name: self._stats[name].as_dict() for name in self.regions}

    def build(self, **fields: Any) -> dict[str, Any]:
        """The summary document: ``fields`` plus frame counts and per-region statistics."""
        doc: dict[str, Any] = dict(fields)
        doc["frames_processed"] = self.frames
        doc["last_frame"] = self.last_index
        doc["last_time_s"] = None if self.last_time_s is None else round(self.last_time_s, 3)
        doc["regions"] = self.region_stats()
        return doc


def write_json_atomic(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` as JSON to ``path`` via a temporary file in the same folder and a rename,
    so a reader never sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, default=_jsonable)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(obj: object) -> object:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()  # type: ignore[no-any-return, attr-defined]
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)
