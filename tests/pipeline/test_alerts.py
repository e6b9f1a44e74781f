"""The per-region alert state machine on synthetic count sequences."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from streamcount.config.schema import AlertRule
from streamcount.pipeline.alerts import NORMAL, UNKNOWN, AlertMachine, EventIds
from streamcount.messages import AlertEvent

WARN = AlertRule(level="warning", above=40, for_s=10, below=30, clear_s=10)


def feed(m: AlertMachine, samples: Iterable[tuple[float, float | None]]) -> list[AlertEvent]:
    out: list[AlertEvent] = []
    for ts, count in samples:
        out += m.update(count, ts)
    return out


def steady(value: float | None, start: float, stop: float, step: float = 1.0
           ) -> list[tuple[float, float | None]]:
    n = int(round((stop - start) / step))
    return [(start + i * step, value) for i in range(n)]


def brief(events: list[AlertEvent]) -> list[tuple[float, str, str]]:
    return [(e.ts, e.previous, e.level) for e in events]


def test_enter_after_min_duration_and_leave_after_clear() -> None:
    m = AlertMachine("cam", "queue", [WARN])
    events = feed(m, steady(10, 0, 5) + steady(50, 5, 30) + steady(20, 30, 60))
    # above 40 from t=5: enters at t=15; below 30 from t=30: leaves at t=40
    assert brief(events) == [(15, NORMAL, "warning"), (40, "warning", NORMAL)]
    enter, leave = events
    assert (enter.count, enter.threshold, enter.camera, enter.region) == (50, 40, "cam", "queue")
    assert leave.threshold == 30 and not enter.renotify
    assert m.state == NORMAL


def test_short_excursions_do_not_fire() -> None:
    m = AlertMachine("cam", "queue", [WARN])
    # 9 s above the threshold, a dip, 9 s above again: never 10 s continuously
    samples = steady(50, 0, 9) + [(9.0, 39.0)] + steady(50, 10, 19) + [(19.0, 0.0)]
    assert feed(m, samples) == []
    assert m.state == NORMAL


def test_oscillation_around_threshold_does_not_flap() -> None:
    rule = AlertRule(level="warning", above=40, below=30, clear_s=5)
    m = AlertMachine("cam", "queue", [rule])
    samples = [(float(t), 41.0 if t % 2 else 39.0) for t in range(120)]
    events = feed(m, samples)
    assert brief(events) == [(1, NORMAL, "warning")]  # hysteresis: 39 is not below 30
    # without hysteresis but with a clear time, flips every second still never clear
    m2 = AlertMachine("cam", "queue", [AlertRule(level="warning", above=40, clear_s=3)])
    assert len(feed(m2, samples)) == 1


def test_no_hysteresis_flaps_for_contrast() -> None:
    # the same oscillation with neither hysteresis nor durations produces an event per flip:
    # shows the previous test measures something
    m = AlertMachine("cam", "queue", [AlertRule(level="warning", above=40)])
    samples = [(float(t), 41.0 if t % 2 else 39.0) for t in range(20)]
    assert len(feed(m, samples)) == 19


def test_cooldown_blocks_quick_reentry() -> None:
    rule = AlertRule(level="warning", above=40, cooldown_s=60)
    m = AlertMachine("cam", "queue", [rule])
    samples = [(0.0, 50.0), (10.0, 10.0), (20.0, 50.0), (50.0, 50.0), (60.0, 50.0),
               (70.0, 10.0)]
    assert brief(feed(m, samples)) == [(0, NORMAL, "warning"), (10, "warning", NORMAL),
                                       (60, NORMAL, "warning"), (70, "warning", NORMAL)]


def test_renotify_while_active() -> None:
    rule = AlertRule(level="critical", above=80, renotify_s=30)
    m = AlertMachine("cam", "queue", [rule])
    events = feed(m, steady(90, 0, 100) + [(100.0, 0.0)])
    assert [(e.ts, e.level, e.renotify) for e in events] == [
        (0, "critical", False), (30, "critical", True), (60, "critical", True),
        (90, "critical", True), (100, NORMAL, False)]
    assert all(e.previous == "critical" for e in events[1:4])


def test_multiple_levels_up_and_down() -> None:
    rules = [AlertRule(level="critical", above=80, for_s=2, below=70, clear_s=2),
             AlertRule(level="warning", above=40, for_s=2, below=30, clear_s=2)]
    m = AlertMachine("cam", "hall", rules)
    assert m.levels == ["warning", "critical"]
    samples = (steady(10, 0, 5) + steady(50, 5, 10) + steady(90, 10, 15) + steady(60, 15, 20)
               + steady(10, 20, 25))
    events = feed(m, samples)
    assert brief(events) == [(7, NORMAL, "warning"), (12, "warning", "critical"),
                             (17, "critical", "warning"), (22, "warning", NORMAL)]
    assert [e.threshold for e in events] == [40, 80, 70, 30]


def test_jump_straight_to_the_top_level() -> None:
    rules = [AlertRule(level="warning", above=40, for_s=10),
             AlertRule(level="critical", above=80)]
    m = AlertMachine("cam", "hall", rules)
    events = feed(m, steady(0, 0, 3) + steady(100, 3, 20))
    # one transition normal -> critical; warning becoming active underneath is not an event
    assert brief(events) == [(3, NORMAL, "critical")]
    # critical clears while the count is still above warning: drop to warning, not normal
    events = feed(m, steady(50, 20, 25))
    assert brief(events) == [(20, "critical", "warning")]


def test_unknown_suspends_evaluation() -> None:
    m = AlertMachine("cam", "queue", [WARN])
    assert m.state == UNKNOWN
    assert feed(m, steady(None, 0, 5)) == []  # nothing was ever reported: silent
    events = feed(m, steady(50, 5, 20))
    assert brief(events) == [(15, NORMAL, "warning")]
    # the stream goes offline: one transition to unknown, no alert level while offline
    events = feed(m, steady(None, 20, 60))
    assert brief(events) == [(20, "warning", UNKNOWN)]
    assert events[0].count is None and events[0].threshold is None
    assert m.state == UNKNOWN
    # counts return, still high: re-evaluated from scratch (for_s again)
    events = feed(m, steady(50, 60, 80))
    assert brief(events) == [(60, UNKNOWN, NORMAL), (70, NORMAL, "warning")]


def test_offline_gaps_reset_durations() -> None:
    m = AlertMachine("cam", "queue", [WARN])
    # 8 s above, offline, 8 s above: the durations never add up across the gap
    events = feed(m, steady(50, 0, 8) + steady(None, 8, 9) + steady(50, 9, 17))
    assert [e.level for e in events] == [UNKNOWN, NORMAL]
    assert all(e.level not in ("warning",) for e in events)


def test_ids_unique_and_increasing() -> None:
    ids = EventIds()
    a = AlertMachine("cam", "a", [AlertRule(level="warning", above=1)], ids)
    b = AlertMachine("cam", "b", [AlertRule(level="warning", above=1)], ids)
    events = []
    for t in range(200):
        v = float(t % 2) * 2
        events += a.update(v, float(t)) + b.update(v, float(t))
    got = [e.id for e in events]
    assert len(got) == 398 and len(set(got)) == len(got)
    assert got == sorted(got) and all(len(i) == 26 for i in got)
    assert EventIds().new() != EventIds().new()


@pytest.mark.parametrize("reverse", [False, True])
def test_rule_order_does_not_matter(reverse: bool) -> None:
    rules = [AlertRule(level="warning", above=40), AlertRule(level="critical", above=80)]
    m = AlertMachine("c", "r", rules[::-1] if reverse else rules)
    assert [e.level for e in feed(m, [(0, 50), (1, 90), (2, 10)])] == \
        ["warning", "critical", NORMAL]
