"""Targeted config edits keep comments and layout and validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamcount.config.edit import set_camera_value
from streamcount.errors import ConfigError

CONFIG = """\
# venue config
cameras:
  - name: door      # the front door
    source: rtsp://cam1/stream
    regions:
      - name: queue
        polygon: [[0, 0], [1, 0], [1, 1]]
  - name: hall
    max_side: 960   # old
    source: /videos/hall.mp4
mqtt:
  host: localhost
"""


def test_inserts_a_key_after_the_camera_name(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(CONFIG)
    set_camera_value(p, "door", "max_side", 512, comment="calibrated")
    text = p.read_text()
    assert "# venue config" in text and "# the front door" in text
    assert "    max_side: 512  # calibrated\n" in text
    cfg = yaml.safe_load(text)
    assert cfg["cameras"][0]["max_side"] == 512 and "max_side" in cfg["cameras"][1]
    assert cfg["cameras"][0]["regions"][0]["name"] == "queue"


def test_replaces_an_existing_value_only(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(CONFIG)
    set_camera_value(p, "hall", "max_side", 384)
    text = p.read_text()
    assert text.count("max_side") == 1 and "    max_side: 384\n" in text
    assert text.replace("    max_side: 384\n", "    max_side: 960   # old\n") == CONFIG


@pytest.mark.parametrize("text, camera, match", [
    (CONFIG, "lobby", "no camera named 'lobby'"),
    ("cameras: {door: 1}\n", "door", "'cameras' is not a list"),
    ("cameras:\n  - {name: door, source: x}\n", "door", "flow mapping"),
    ("cameras: [\n", "door", "not valid YAML"),
])
def test_problems_are_one_line_and_leave_the_file(tmp_path: Path, text: str, camera: str,
                                                  match: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        set_camera_value(p, camera, "max_side", 512)
    assert p.read_text() == text


def test_upsert_region_replaces_only_the_polygon(tmp_path: Path) -> None:
    from streamcount.config.edit import upsert_region_text
    text = CONFIG.replace("        polygon: [[0, 0], [1, 0], [1, 1]]\n",
                          "        polygon: [[0, 0], [1, 0], [1, 1]]  # drawn by hand\n"
                          "        alerts: [{level: warning, above: 5}]\n")
    out = upsert_region_text(text, "door", "queue", [(0.1, 0.2), (0.5, 0.2), (0.3, 0.9)])
    assert "# drawn by hand" in out and "# venue config" in out
    cfg = yaml.safe_load(out)
    region = cfg["cameras"][0]["regions"][0]
    assert region["polygon"] == [[0.1, 0.2], [0.5, 0.2], [0.3, 0.9]]
    assert region["alerts"] == [{"level": "warning", "above": 5}]


@pytest.mark.parametrize("camera", ["door", "hall"])
def test_upsert_region_appends_a_new_region(camera: str) -> None:
    from streamcount.config.edit import upsert_region_text
    out = upsert_region_text(CONFIG, camera, "exit", [(0, 0), (0.25, 0), (0.25, 0.5)])
    cfg = yaml.safe_load(out)
    cam = next(c for c in cfg["cameras"] if c["name"] == camera)
    assert cam["regions"][-1] == {"name": "exit", "polygon": [[0, 0], [0.25, 0], [0.25, 0.5]]}
    assert cfg["mqtt"] == {"host": "localhost"} and len(cfg["cameras"]) == 2
    assert out.count("# the front door") == 1


def test_upsert_region_flow_list_and_pixels() -> None:
    from streamcount.config.edit import upsert_region_text
    text = ("cameras:\n  - name: a\n    source: x.mp4\n    regions: [{name: r, polygon: "
            "[[0, 0], [64, 0], [64, 48]], reference_size: [64, 48]}]\n")
    out = upsert_region_text(text, "a", "r", [(0.5, 0.5), (1, 0.5), (1, 1)])
    assert yaml.safe_load(out)["cameras"][0]["regions"][0]["polygon"] == \
        [[32, 24], [64, 24], [64, 48]]
    out = upsert_region_text(out, "a", "s", [(0, 0), (1, 0), (1, 1)])
    assert [r["name"] for r in yaml.safe_load(out)["cameras"][0]["regions"]] == ["r", "s"]
