"""Density in people/m²: LoS tables, the ground homography against hand-worked geometry, the
aggregator's density and density alert rules, validation of impossible areas by key path."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from streamcount.config.loader import validate_config
from streamcount.config.schema import AlertRule, RegionConfig, SmoothingConfig
from streamcount.pipeline.aggregate import RegionAggregator
from streamcount.floor import (CalibrationError, ground_area, homography,
                                          los_letter)
from streamcount.messages import CountUpdate, CountState, region_state
from streamcount.sinks.mqtt import count_payload

#: a 4 m wide, 10 m deep floor rectangle seen in perspective: a symmetric trapezoid
TRAPEZOID = [(0.3, 0.4), (0.7, 0.4), (0.9, 0.9), (0.1, 0.9)]
FLOOR = [(0.0, 0.0), (4.0, 0.0), (4.0, 10.0), (0.0, 10.0)]
STEEP = [(0.4, 0.5), (0.6, 0.5), (0.9, 0.9), (0.1, 0.9)]


@pytest.mark.parametrize(("density", "walkway", "queue"), [
    (0.0, "A", "A"), (0.31, "A", "A"), (0.32, "B", "A"), (0.5, "C", "A"), (0.9, "D", "B"),
    (1.5, "E", "C"), (2.2, "F", "D"), (3.4, "F", "E"), (4.99, "F", "E"), (5.0, "F", "F"),
    (7.1, "F", "F")])
def test_los_tables(density: float, walkway: str, queue: str) -> None:
    assert los_letter(density, "walkway") == walkway
    assert los_letter(density, "queue") == queue


def test_homography_maps_the_calibration_points() -> None:
    H = homography(TRAPEZOID, FLOOR)
    for (x, y), (u, v) in zip(TRAPEZOID, FLOOR, strict=True):
        p = H @ [x, y, 1.0]
        assert p[0] / p[2] == pytest.approx(u, abs=1e-9)
        assert p[1] / p[2] == pytest.approx(v, abs=1e-9)


def test_ground_area_hand_worked() -> None:
    """The whole trapezoid is the 40 m² rectangle; its symmetry axis (x = 0.5) is the floor's
    x = 2 m line, so the left half is 20 m²; the diagonals cross at the floor's centre (x = 0.5,
    y = 0.4 + 0.5/3 in the image: incidence survives perspective), so the triangle of the near
    edge and that point is a quarter, 10 m² — although it covers far less of the image."""
    H = homography(TRAPEZOID, FLOOR)
    assert ground_area(H, TRAPEZOID) == pytest.approx(40.0)
    assert ground_area(H, [(0.3, 0.4), (0.5, 0.4), (0.5, 0.9), (0.1, 0.9)]) == \
        pytest.approx(20.0)
    centre = (0.5, 0.4 + 0.5 / 3)
    assert ground_area(H, [(0.3, 0.4), (0.7, 0.4), centre]) == pytest.approx(10.0)
    assert ground_area(H, [(0.9, 0.9), (0.1, 0.9), centre]) == pytest.approx(10.0)


def test_rectangle_without_perspective() -> None:
    H = homography([(0, 0), (1, 0), (1, 1), (0, 1)], [(0, 0), (20, 0), (20, 5), (0, 5)])
    assert ground_area(H, [(0.25, 0.2), (0.75, 0.2), (0.75, 0.6), (0.25, 0.6)]) == \
        pytest.approx(0.5 * 20 * 0.4 * 5)


def test_calibration_errors() -> None:
    with pytest.raises(CalibrationError, match="one line"):
        homography([(0, 0), (0.5, 0), (1, 0), (0, 1)], FLOOR)
    with pytest.raises(CalibrationError, match="exactly 4"):
        homography(TRAPEZOID[:3], FLOOR[:3])
    # a steep trapezoid: its sides meet at x = 0.5, y = 0.5 - 0.1 / 0.75 (the horizon), so
    # the whole frame reaches beyond it while the lower half does not
    H = homography(STEEP, FLOOR)
    with pytest.raises(CalibrationError, match="horizon"):
        ground_area(H, [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
    assert ground_area(H, [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]) > 40


def test_region_floor_area_from_config() -> None:
    r = RegionConfig.model_validate({
        "name": "plaza", "polygon": TRAPEZOID,
        "ground": {"image": TRAPEZOID, "rectangle_m": [4, 10]}})
    assert r.floor_area() == pytest.approx(40.0)
    px = RegionConfig.model_validate({
        "name": "plaza", "polygon": [[x * 640, y * 480] for x, y in TRAPEZOID],
        "reference_size": [640, 480],
        "ground": {"image": [[x * 640, y * 480] for x, y in TRAPEZOID], "metres": FLOOR}})
    assert px.floor_area() == pytest.approx(40.0)
    assert RegionConfig.model_validate({"name": "q", "polygon": TRAPEZOID,
                                        "area_m2": 12.5}).floor_area() == 12.5


def test_aggregator_density_and_density_rules() -> None:
    agg = RegionAggregator("cam", "plaza", SmoothingConfig(method="none"),
                           [AlertRule(level="crush", above_density=4.0, below_density=3.0),
                            AlertRule(level="busy", above=30)], area_m2=10.0,
                           los_table="queue")
    u, ev = agg.update(20.0, 0.0)
    assert (u.density, u.los, u.area_m2, u.level) == (2.0, "D", 10.0, None)
    u, ev = agg.update(41.0, 1.0)  # above 30 people and above 4 p/m² (40 people)
    assert u.level == "crush" and ev[0].threshold == pytest.approx(40.0)
    assert u.density == pytest.approx(4.1) and u.los == "E"
    u, ev = agg.update(35.0, 2.0)  # 3.5 p/m²: above below_density, still crush
    assert u.level == "crush" and not ev
    u, ev = agg.update(29.0, 3.0)  # 2.9 p/m² and below 30 people
    assert u.level is None and ev[0].threshold == pytest.approx(30.0)
    u, _ = agg.update(None, 4.0, "stalled")
    assert u.density is None and u.los is None and u.area_m2 == 10.0


def test_payloads_carry_density_only_when_calibrated() -> None:
    plain = CountUpdate("c", "r", 1.0, 5.0, 5.0, CountState.OK)
    assert "density" not in count_payload(plain) and "density" not in region_state(plain)
    cal = CountUpdate("c", "r", 1.0, 5.0, 5.0, CountState.OK, density=0.5, los="C",
                      area_m2=10.0)
    assert count_payload(cal)["density"] == 0.5 and count_payload(cal)["los"] == "C"
    assert region_state(cal)["area_m2"] == 10.0


def _config(tmp_path: Path, region: str) -> Path:
    p = tmp_path / "service.yaml"
    p.write_text(textwrap.dedent("""\
        cameras:
          - name: hall
            source: rtsp://192.0.2.1/stream
            regions:
              - name: ok
                polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]
                area_m2: 50
        """) + textwrap.indent(textwrap.dedent(region), " " * 6))
    return p


@pytest.mark.parametrize(("region", "key", "message"), [
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n  area_m2: 0\n",
     "cameras[0].regions[1].area_m2", "must be positive"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n  area_m2: -3\n",
     "cameras[0].regions[1].area_m2", "must be positive"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n  area_m2: .nan\n",
     "cameras[0].regions[1].area_m2", "finite"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n  area_m2: 5e9\n",
     "cameras[0].regions[1].area_m2", "units"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n"
     "  ground: {image: [[0, 0], [0.5, 0], [1, 0], [0, 1]], rectangle_m: [3, 4]}\n",
     "cameras[0].regions[1].ground", "one line"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]\n"
     "  ground: {image: [[0.4, 0.5], [0.6, 0.5], [0.9, 0.9], [0.1, 0.9]], "
     "rectangle_m: [4, 10]}\n",
     "cameras[0].regions[1].ground", "horizon"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n"
     "  ground: {image: [[0, 0], [1, 0], [1, 1], [0, 1]], rectangle_m: [0, 4]}\n",
     "cameras[0].regions[1].ground.rectangle_m", "positive"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n  area_m2: 4\n"
     "  ground: {image: [[0, 0], [1, 0], [1, 1], [0, 1]], rectangle_m: [2, 4]}\n",
     "cameras[0].regions[1].ground", "not both"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n"
     "  alerts: [{level: crush, above_density: 4}]\n",
     "cameras[0].regions[1].alerts[0].above_density", "needs the region's area_m2"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n  area_m2: 10\n"
     "  alerts: [{level: crush, above_density: 4, below_density: 5}]\n",
     "cameras[0].regions[1].alerts[0].below_density", "must not exceed"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n  area_m2: 10\n"
     "  alerts: [{level: crush, above: 4, above_density: 4}]\n",
     "cameras[0].regions[1].alerts[0].above", "exactly one"),
    ("- name: q\n  polygon: [[0, 0], [1, 0], [1, 1]]\n  area_m2: 10\n"
     "  alerts: [{level: a, above: 40}, {level: b, above_density: 4}]\n",
     "cameras[0].regions[1].alerts[1].above_density", "duplicate alert threshold"),
])
def test_impossible_areas_are_rejected_with_the_key_path(tmp_path: Path, region: str,
                                                         key: str, message: str) -> None:
    issues = validate_config(_config(tmp_path, region))
    assert [i.key_path for i in issues] == [key], issues
    assert message in issues[0].message
    assert issues[0].line is not None


def test_valid_calibrated_config(tmp_path: Path) -> None:
    issues = validate_config(_config(tmp_path, (
        "- name: q\n  polygon: [[0.3, 0.4], [0.7, 0.4], [0.9, 0.9], [0.1, 0.9]]\n"
        "  los: queue\n"
        "  ground: {image: [[0.3, 0.4], [0.7, 0.4], [0.9, 0.9], [0.1, 0.9]], "
        "metres: [[0, 0], [4, 0], [4, 10], [0, 10]]}\n"
        "  alerts: [{level: warn, above_density: 3.5, below_density: 3, for_s: 10}]\n")))
    assert issues == []
    assert math.isclose(40.0 * 3.5, AlertRule(level="w", above_density=3.5)
                        .in_counts(40.0).above or 0)
