"""The console's memory stays bounded: one history point per second per region, one hour."""

from __future__ import annotations

from streamcount.console.state import HISTORY_S, ConsoleState
from streamcount.messages import AlertEvent, CountState, CountUpdate


def test_history_is_bounded_and_keeps_unknown_gaps() -> None:
    s = ConsoleState()
    for i in range(3 * 3600 * 4):  # three hours at 4 updates per second
        ts = i / 4
        unknown = 5000 <= ts < 5002
        s.handle(CountUpdate("cam", "r", ts, None if unknown else 1.0,
                             None if unknown else float(i % 7),
                             CountState.UNKNOWN if unknown else CountState.OK))
    points = s.history("cam")["r"]
    last = points[-1][0]
    assert len(points) <= HISTORY_S + 1 and points[0][0] >= last - HISTORY_S
    assert all(b[0] - a[0] >= 1.0 for a, b in zip(points, points[1:]))
    s.handle(CountUpdate("cam", "r", last + 1.5, None, None, CountState.UNKNOWN))
    assert s.history("cam")["r"][-1] == (last + 1.5, None)


def test_alerts_newest_first_per_camera() -> None:
    s = ConsoleState()
    for i, cam in enumerate(["a", "b", "a"]):
        s.handle(AlertEvent(str(i), cam, "r", "warning", "normal", 5.0, 4.0, float(i)))
    assert [a["id"] for a in s.alerts("a")] == ["2", "0"]
    assert [a["id"] for a in s.alerts()] == ["2", "1", "0"]
    assert s.jpeg("a") is None and s.density("a") is None and s.preview("a", [(0, 0)]) is None


def test_density_view_carries_the_people_counted_by_detection() -> None:
    import time

    import numpy as np

    from streamcount.messages import Frame

    state = ConsoleState()
    frame = Frame("cam", 0, 0.0, time.time(), np.zeros((100, 200, 3), np.uint8))
    density = np.zeros((12, 25), np.float32)
    state.set_frame("cam", frame, density)  # counted by density alone
    assert state.density("cam")["boxes"] is None
    boxes = np.array([[20, 10, 60, 90], [150, 0, 250, 50]], np.float32)  # the second overhangs
    state.set_frame("cam", frame, density, boxes)
    assert state.density("cam")["boxes"] == [[0.1, 0.1, 0.3, 0.9], [0.75, 0.0, 1.0, 0.5]]
    state.set_frame("cam", frame, density, np.zeros((0, 4), np.float32))  # nobody detected
    assert state.density("cam")["boxes"] == []
