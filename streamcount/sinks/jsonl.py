"""JSON-lines sink: every event as one JSON object per line, appended and flushed per line.

Each line is ``{"type": "<EventClass>", <the event's fields>}``; enums become their values,
non-finite floats ``null``. Non-dataclass events are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from enum import Enum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _plain(value.item())
    return value


def event_to_dict(event: Any) -> dict[str, Any]:
    """``{"type": class name, **fields}`` of a dataclass event (array fields skipped)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
            continue  # never write arrays (frames, density maps)
        out[f.name] = _plain(value)
    return out


class JsonlSink:
    """Appends events to ``path`` (created with its parent directories)."""

    def __init__(self, path: str | os.PathLike[str], name: str = "jsonl") -> None:
        self.name = name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def handle(self, event: object) -> None:
        """Write ``event`` as one line and flush."""
        if not dataclasses.is_dataclass(event) or isinstance(event, type):
            return
        self._file.write(json.dumps(event_to_dict(event), separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if not self._file.closed:
            self._file.close()
