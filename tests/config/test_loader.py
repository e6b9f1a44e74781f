"""The service config loader: the issue's sample config, and every kind of bad config reported
with its key path and the line it is on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from streamcount.config.loader import (ConfigIssue, format_key_path, load_config,
                                       parse_key_path, validate_config)
from streamcount.errors import ConfigError

ISSUE_SAMPLE = """\
mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: streamcount, username: ${MQTT_USER}}
http: {port: 8080}
cameras:
  - name: entrance
    source: rtsp://user:pass@192.0.2.10:554/stream1
    fps: 5
    regions:
      - name: queue
        polygon: [[0.10, 0.20], [0.60, 0.20], [0.60, 0.90], [0.10, 0.90]]
        alerts: [{level: warning, above: 40, for_s: 10, below: 30, clear_s: 10}]
  - name: replay
    source: ../shared/data/video/vtest.avi
    loop: true
"""


def write(dirpath: Path, text: str, name: str = "service.yaml") -> Path:
    p = dirpath / name
    p.write_text(textwrap.dedent(text))
    return p


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing ``needle``."""
    hits = [i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln]
    return hits[nth - 1]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A (tiny, never decoded) video file for file sources."""
    p = tmp_path / "clip.mp4"
    p.write_bytes(b"\0" * 16)
    return p


def only(issues: list[ConfigIssue], key: str) -> ConfigIssue:
    found = [i for i in issues if i.key_path == key]
    assert found, f"no issue at {key}: {issues}"
    return found[0]


def test_issue_sample_loads_as_written(tmp_path: Path, vtest_avi: Path) -> None:
    # the sample refers to ../shared/data/video/vtest.avi relative to the config's directory
    root = tmp_path / "repo"
    video_dir = tmp_path / "shared" / "data" / "video"
    video_dir.mkdir(parents=True)
    (video_dir / "vtest.avi").symlink_to(vtest_avi)
    root.mkdir()
    path = write(root, ISSUE_SAMPLE)
    cfg = load_config(path, env={"MQTT_USER": "operator"})
    assert cfg.mqtt is not None and cfg.mqtt.username == "operator"
    assert cfg.mqtt.port == 1883 and cfg.http.port == 8080
    entrance, replay = cfg.cameras
    assert entrance.kind == "rtsp" and entrance.fps == 5
    rule = entrance.regions[0].alerts[0]
    assert (rule.level, rule.above, rule.for_s, rule.below, rule.clear_s) == \
        ("warning", 40, 10, 30, 10)
    assert replay.loop and replay.kind == "file"
    assert Path(replay.source) == video_dir / "vtest.avi"  # resolved against the config dir
    assert cfg.summary() == {"cameras": 2, "regions": 1}
    assert validate_config(path, env={"MQTT_USER": "operator"}) == []


def test_missing_env_var_names_key_and_line(tmp_path: Path, vtest_avi: Path) -> None:
    path = write(tmp_path, ISSUE_SAMPLE.replace("../shared/data/video/vtest.avi",
                                                str(vtest_avi)))
    issues = validate_config(path, env={})
    assert issues == [ConfigIssue("mqtt.username", 1, "environment variable MQTT_USER is not set")]
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert str(e.value) == f"{path}:1: mqtt.username: environment variable MQTT_USER is not set"
    assert e.value.line == 1 and e.value.key == "mqtt.username"


def test_env_default_and_escape(tmp_path: Path, clip: Path) -> None:
    path = write(tmp_path, f"""\
        mqtt:
          host: ${{BROKER:-localhost}}
          port: ${{PORT}}
          topic_prefix: a$$b
        cameras: [{{name: c, source: {clip}}}]
        """)
    cfg = load_config(path, env={"PORT": "8883"})
    assert cfg.mqtt.host == "localhost" and cfg.mqtt.port == 8883
    assert cfg.mqtt.topic_prefix == "a$b"
    assert load_config(path, env={"PORT": "1", "BROKER": "b.example"}).mqtt.host == "b.example"


def test_secrets(tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mqtt_password").write_text("s3cret\n")
    (secrets / "mqtt_user").write_text("alice")
    (secrets / "ca.pem").write_text("not parsed here")
    monkeypatch.setenv("STREAMCOUNT_SECRETS_DIR", str(secrets))
    path = write(tmp_path, f"""\
        mqtt:
          host: broker
          username: ${{secret:mqtt_user}}
          password: /run/secrets/mqtt_password
          tls: {{enabled: true, ca_file: /run/secrets/ca.pem}}
        cameras: [{{name: c, source: {clip}}}]
        """)
    cfg = load_config(path)
    assert cfg.mqtt.username == "alice" and cfg.mqtt.password == "s3cret"
    # a file-path key keeps /run/secrets/NAME as a path (re-rooted in the secrets dir)
    assert cfg.mqtt.tls.ca_file == str(secrets / "ca.pem")
    assert "s3cret" not in repr(cfg.mqtt)


def test_missing_secret(tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCOUNT_SECRETS_DIR", str(tmp_path / "none"))
    path = write(tmp_path, f"""\
        cameras: [{{name: c, source: {clip}}}]
        mqtt:
          host: broker
          password: /run/secrets/mqtt_password
        """)
    issue = only(validate_config(path), "mqtt.password")
    assert issue.line == line_of(path, "password:")
    assert "secret 'mqtt_password' not found" in issue.message


BAD_CASES = [
    # (name, yaml snippet of one camera + extras, expected key path, line needle, message part)
    ("unknown key", "    fsp: 5\n", "cameras[0].fsp", "fsp:",
     "unknown key 'fsp' (did you mean 'fps'?)"),
    ("bad polygon",
     "    regions:\n      - name: q\n"
     "        polygon: [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]\n",
     "cameras[0].regions[0].polygon", "polygon:", "region 'q'"),
    ("point outside",
     "    regions:\n      - name: a\n        polygon: [[0, 0], [1, 0], [1, 1]]\n"
     "      - name: b\n        polygon: [[0, 0], [1.5, 0], [1, 1]]\n",
     "cameras[0].regions[1].polygon", "[1.5, 0]", "lies outside"),
    ("bad fps", "    fps: -1\n", "cameras[0].fps", "fps:", "greater than 0"),
    ("below above above",
     "    regions:\n      - name: q\n        polygon: [[0, 0], [1, 0], [1, 1]]\n"
     "        alerts:\n          - {level: warning, above: 10, below: 12}\n",
     "cameras[0].regions[0].alerts[0].below", "level: warning", "must not exceed above"),
    ("reserved level",
     "    regions:\n      - name: q\n        polygon: [[0, 0], [1, 0], [1, 1]]\n"
     "        alerts:\n          - {level: normal, above: 10}\n",
     "cameras[0].regions[0].alerts[0].level", "level: normal", "reserved"),
    ("duplicate level",
     "    regions:\n      - name: q\n        polygon: [[0, 0], [1, 0], [1, 1]]\n"
     "        alerts:\n          - {level: warning, above: 10}\n"
     "          - {level: warning, above: 20}\n",
     "cameras[0].regions[0].alerts[1].level", "above: 20", "duplicate alert level 'warning'"),
    ("duplicate region",
     "    regions:\n      - name: q\n        polygon: [[0, 0], [1, 0], [1, 1]]\n"
     "      - name: q\n        polygon: [[0, 0], [1, 0], [0, 1]]\n",
     "cameras[0].regions[1].name", "- name: q#2", "duplicate region name 'q'"),
    ("loop on a stream", "    loop: true\n", "cameras[0].loop", "loop:", "only for file"),
    ("bad transport", "    rtsp_transport: http\n", "cameras[0].rtsp_transport",
     "rtsp_transport", "'tcp' or 'udp'"),
]


@pytest.mark.parametrize("name,snippet,key,needle,message", BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])
def test_bad_camera_settings(tmp_path: Path, name: str, snippet: str, key: str, needle: str,
                             message: str) -> None:
    text = "cameras:\n  - name: cam\n    source: rtsp://u:p@192.0.2.1/s\n" + snippet
    path = write(tmp_path, text)
    issues = validate_config(path, env={})
    issue = only(issues, key)
    needle, _, nth = needle.partition("#")
    assert issue.line == line_of(path, needle, int(nth or 1)), issues
    assert message in issue.message
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert str(e.value).startswith(f"{path}:")


@pytest.mark.parametrize("source,message", [
    ("rtsp://user:pass@:554/stream1", "URL has no host"),
    ("rtsp://user:pass@host:99999/s", "invalid port"),
    ("rtsp://user:pass@host:port/s", "invalid port"),
    ("rtmpx://user:pass@host/s", "unknown URL scheme 'rtmpx'"),
    ("http:///mjpeg", "URL has no host"),
    ("/dev/video", "not a video device"),
    ("missing.mp4", "file not found"),
])
def test_malformed_sources(tmp_path: Path, source: str, message: str) -> None:
    path = write(tmp_path, f"cameras:\n  - name: door\n    fps: 2\n    source: {source}\n")
    issue = only(validate_config(path), "cameras[0].source")
    assert issue.line == 4
    assert message in issue.message
    assert "pass" not in issue.message  # credentials never shown


@pytest.mark.parametrize("source", ["rtsp://192.0.2.1/s", "rtsps://cam.example:322/live",
                                    "http://cam.local/mjpeg", "https://x.example/live.m3u8",
                                    "/dev/video0"])
def test_good_sources(tmp_path: Path, source: str) -> None:
    path = write(tmp_path, f"cameras:\n  - name: door\n    source: {source}\n")
    assert validate_config(path) == []


def test_duplicate_camera_and_all_problems_reported(tmp_path: Path, clip: Path) -> None:
    path = write(tmp_path, f"""\
        mqtt: {{host: broker, port: 70000}}
        http: {{prot: 80}}
        cameras:
          - name: a
            source: {clip}
          - name: a
            source: rtsp://h/s
            fps: 0
        """)
    issues = validate_config(path)
    keys = [i.key_path for i in issues]
    assert keys == ["mqtt.port", "http.prot", "cameras[1].name", "cameras[1].fps"]
    assert [i.line for i in issues] == [1, 2, 6, 8]
    assert issues[2].message == "duplicate camera name 'a'"


def test_unknown_model(tmp_path: Path, clip: Path) -> None:
    path = write(tmp_path, f"""\
        inference:
          backend: auto
          model: no_such_model
        cameras: [{{name: a, source: {clip}}}]
        """)
    issue = only(validate_config(path), "inference.model")
    assert issue.line == 3 and "unknown model 'no_such_model'" in issue.message
    path = write(tmp_path, f"inference: {{model: weights/none.safetensors}}\n"
                           f"cameras: [{{name: a, source: {clip}}}]\n")
    assert "model file not found" in only(validate_config(path), "inference.model").message


@pytest.mark.parametrize("text,line,message", [
    ("cameras: [\n", 2, "YAML syntax error"),
    ("", 1, "empty"),
    ("- a\n- b\n", 1, "must be a mapping"),
    ("cameras: []\n", 1, "at least 1 item"),
    ("mqtt: {host: x}\n", 1, "required key is missing"),
    ("cameras: [{name: a, source: rtsp://h/s}]\ncameras: []\n", 2, "duplicate key 'cameras'"),
])
def test_structure_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    issues = validate_config(path)
    assert issues and issues[0].line == line and message in issues[0].message, issues


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_key_path_round_trip() -> None:
    loc = ("cameras", 0, "regions", 12, "polygon", 2, 1)
    assert format_key_path(loc) == "cameras[0].regions[12].polygon[2][1]"
    assert parse_key_path(format_key_path(loc)) == loc
