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
