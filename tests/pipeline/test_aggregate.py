"""Smoothers and the region aggregator (smoothing + alerts + health gating)."""

from __future__ import annotations

import math

import pytest

from streamcount.config.schema import AlertRule, SmoothingConfig
from streamcount.pipeline.aggregate import (EmaSmoother, MedianSmoother, NoSmoother,
                                            RegionAggregator, make_smoother)
from streamcount.messages import CountState


def test_ema_rise_and_fall_time_constants() -> None:
    s = EmaSmoother(rise_s=2.0, fall_s=5.0)
    assert s.update(0.0, 0.0) == 0.0
    # rising: after one rise time constant 1 - 1/e of the step
    assert s.update(10.0, 2.0) == pytest.approx(10 * (1 - math.exp(-1)))
    v = s.update(10.0, 100.0)
    assert v == pytest.approx(10.0, abs=1e-9)
    # falling uses fall_s: after 5 s, 1/e of the step remains
    assert s.update(0.0, 105.0) == pytest.approx(10 * math.exp(-1))


def test_ema_time_based_irregular_steps_agree() -> None:
    a, b = EmaSmoother(3, 3), EmaSmoother(3, 3)
    a.update(0, 0.0)
    b.update(0, 0.0)
    for t in (0.5, 1.0, 1.5, 2.0):
        va = a.update(8, t)
    vb = b.update(8, 2.0)
    # constant input: four 0.5 s steps equal one 2 s step
    assert va == pytest.approx(vb)


def test_ema_zero_time_constant_follows() -> None:
    s = EmaSmoother(0, 0)
    s.update(1, 0)
    assert s.update(7, 0.1) == 7


def test_ema_reset() -> None:
    s = EmaSmoother(2, 5)
    s.update(100, 0)
    s.reset()
    assert s.update(3, 1) == 3


def test_median_rejects_spikes() -> None:
    s = MedianSmoother(window=3)
    out = [s.update(v, float(t)) for t, v in enumerate([5, 5, 90, 5, 6, 7])]
    assert out == [5, 5, 5, 5, 6, 6]
    s.reset()
    assert s.update(1, 9.0) == 1
    with pytest.raises(ValueError):
        MedianSmoother(0)


def test_make_smoother() -> None:
    assert isinstance(make_smoother(SmoothingConfig()), EmaSmoother)
    assert isinstance(make_smoother(SmoothingConfig(method="median")), MedianSmoother)
    none = make_smoother(SmoothingConfig(method="none"))
    assert isinstance(none, NoSmoother) and none.update(4.5, 0) == 4.5


def test_aggregator_counts_and_levels() -> None:
    agg = RegionAggregator("cam", "queue", SmoothingConfig(method="none"),
                           [AlertRule(level="warning", above=40, for_s=2)])
    u, ev = agg.update(12.5, 0.0)
    assert (u.camera, u.region, u.ts, u.raw, u.count, u.state, u.level, u.reason) == \
        ("cam", "queue", 0.0, 12.5, 12.5, CountState.OK, None, None)
    assert ev == []
    out = [agg.update(50.0, float(t)) for t in range(1, 5)]
    assert [len(e) for _, e in out] == [0, 0, 1, 0]
    assert out[2][1][0].level == "warning" and out[2][0].level == "warning"


def test_aggregator_unhealthy_stream() -> None:
    agg = RegionAggregator("cam", "queue", SmoothingConfig(rise_s=10, fall_s=10),
                           [AlertRule(level="warning", above=40)])
    agg.update(100.0, 0.0)
    u, ev = agg.update(None, 1.0, reason="stalled")
    assert u.state == CountState.UNKNOWN and u.count is None and u.raw is None
    assert u.reason == "stalled" and u.level == "unknown"
    assert [e.level for e in ev] == ["unknown"]
    # the smoother was reset: the first count after recovery is not mixed with stale ones
    u, ev = agg.update(3.0, 2.0)
    assert u.count == 3.0 and u.state == CountState.OK and u.level is None
    assert [(e.previous, e.level) for e in ev] == [("unknown", "normal")]
    u, _ = agg.update(float("nan"), 3.0)
    assert u.state == CountState.UNKNOWN and u.reason == "non-finite count"
