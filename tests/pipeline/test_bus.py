"""The event bus: order, isolation of failing sinks, queue policy, draining on close."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from streamcount.pipeline.bus import EventBus, is_droppable
from streamcount.messages import AlertEvent, CountState, CountUpdate, StatusEvent
from streamcount.sinks.base import Sink


def count(i: int) -> CountUpdate:
    return CountUpdate("cam", "r", float(i), float(i), float(i), CountState.OK)


def alert(i: int) -> AlertEvent:
    return AlertEvent(f"id{i}", "cam", "r", "warning", "normal", 1.0, 1.0, float(i))


class Recorder:
    """Records events; optionally blocks until released, or fails on some events."""

    def __init__(self, name: str = "rec", gate: threading.Event | None = None,
                 fail_on: type | None = None) -> None:
        self.name = name
        self.events: list[object] = []
        self.gate = gate
        self.fail_on = fail_on
        self.closed = False
        self.started = threading.Event()

    def handle(self, event: object) -> None:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_on is not None and isinstance(event, self.fail_on):
            raise RuntimeError("sink failure")
        self.events.append(event)

    def close(self) -> None:
        self.closed = True


def test_recorder_is_a_sink() -> None:
    assert isinstance(Recorder(), Sink)


def test_every_sink_gets_every_event_in_order() -> None:
    bus = EventBus()
    a, b = Recorder("a"), Recorder("b")
    bus.add_sink(a)
    bus.add_sink(b)
    events = [count(i) if i % 3 else alert(i) for i in range(300)]
    for e in events:
        bus.publish(e)
    assert bus.close(timeout=10)
    assert a.events == events and b.events == events
    assert a.closed and b.closed
    bus.publish(count(999))  # ignored after close
    assert len(a.events) == 300


def test_failing_sink_is_isolated(caplog) -> None:
    bus = EventBus()
    bad, good = Recorder("bad", fail_on=CountUpdate), Recorder("good")
    bus.add_sink(bad)
    bus.add_sink(good)
    events = [count(0), alert(1), count(2), alert(3)]
    for e in events:
        bus.publish(e)
    bus.close()
    assert good.events == events
    assert bad.events == [events[1], events[3]]  # kept going after each failure
    stats = {s.name: s for s in bus.stats()}
    assert stats["bad"].errors == 2 and stats["good"].errors == 0
    assert "sink bad failed on CountUpdate" in caplog.text


def test_full_queue_drops_oldest_counts_never_alerts() -> None:
    gate = threading.Event()
    slow = Recorder("slow", gate=gate)
    bus = EventBus(queue_size=4)
    bus.add_sink(slow)
    bus.publish(count(0))
    assert slow.started.wait(5)  # count 0 is being handled; the queue is empty
    published = [count(1), alert(2), count(3), count(4), count(5), alert(6), count(7),
                 alert(8), alert(9), alert(10), StatusEvent("cam", "offline", "stall", 11.0)]
    for e in published:
        bus.publish(e)
    gate.set()
    bus.close()
    got = slow.events
    assert got[0] == count(0)
    alerts = [e for e in got if isinstance(e, AlertEvent)]
    assert [a.id for a in alerts] == ["id2", "id6", "id8", "id9", "id10"]  # none lost
    assert isinstance(got[-1], StatusEvent)
    counts = [e.ts for e in got if isinstance(e, CountUpdate)]
    assert counts == sorted(counts) and len(counts) < 6  # oldest counts were dropped
    assert bus.stats()[0].dropped == 6 - len(counts)
    assert not is_droppable(alert(0)) and is_droppable(count(0))


def test_publish_never_blocks_on_a_stuck_sink() -> None:
    gate = threading.Event()
    stuck = Recorder("stuck", gate=gate)
    bus = EventBus(queue_size=8)
    bus.add_sink(stuck)
    for i in range(10_000):  # would hang (pytest-timeout) if publish blocked
        bus.publish(count(i))
    assert bus.stats()[0].queued == 8
    gate.set()
    bus.close()
    assert len(stuck.events) <= 9
    assert stuck.events[-1] == count(9999)  # the newest survive


@dataclass(frozen=True)
class Custom:
    value: int


def test_any_event_type_and_close_timeout() -> None:
    gate = threading.Event()
    bus = EventBus()
    rec = Recorder("r", gate=gate)
    bus.add_sink(rec)
    bus.publish(Custom(1))
    assert bus.close(timeout=0.2) is False  # still blocked in handle
    gate.set()
    deadline = time.monotonic() + 10
    while not rec.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.events == [Custom(1)] and rec.closed
