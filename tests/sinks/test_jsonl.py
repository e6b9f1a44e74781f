"""The JSON-lines sink."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamcount.messages import (AlertEvent, CountState, CountUpdate, Frame,
                                           StatusEvent)
from streamcount.sinks.jsonl import JsonlSink


def test_one_object_per_line_flushed(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    sink = JsonlSink(path)
    sink.handle(CountUpdate("cam", "q", 1.5, 3.25, 3.0, CountState.OK, level="warning",
                            method="hybrid"))
    # flushed per line: readable before close
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"type": "CountUpdate", "camera": "cam", "region": "q", "ts": 1.5,
                     "raw": 3.25, "count": 3.0, "state": "ok", "reason": None,
                     "level": "warning", "density": None, "los": None, "area_m2": None,
                     "method": "hybrid"}
    sink.handle(AlertEvent("01J", "cam", "q", "warning", "normal", 41.0, 40.0, 2.0))
    sink.handle(StatusEvent("cam", "offline", "stalled", 3.0, fps=float("nan")))
    sink.handle(Frame("cam", 0, 0.0, 0.0, np.zeros((2, 2, 3), np.uint8)))  # array skipped
    sink.handle("not an event")
    sink.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["type"] for x in lines] == ["CountUpdate", "AlertEvent", "StatusEvent", "Frame"]
    assert lines[1]["renotify"] is False and lines[1]["id"] == "01J"
    assert lines[2]["fps"] is None
    assert "image" not in lines[3]
    # appends across runs
    sink = JsonlSink(path)
    sink.handle(StatusEvent("cam", "online", None, 4.0))
    sink.close()
    assert len(path.read_text().splitlines()) == 5
