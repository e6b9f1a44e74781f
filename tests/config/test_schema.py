"""Config models: defaults, per-camera overrides, path resolution, cross-field rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streamcount.config.regions import RegionSpec
from streamcount.config.schema import (AlertRule, CameraConfig, MqttConfig, RegionConfig,
                                       ServiceConfig, SmoothingConfig, TlsConfig,
                                       default_spool_dir, source_kind)
from streamcount.engine.preprocess import DEFAULT_MAX_SIDE


def cam(**kw: object) -> dict[str, object]:
    return {"name": "c", "source": "rtsp://192.0.2.1/s", **kw}


def test_effective_settings_override_chain() -> None:
    cfg = ServiceConfig.model_validate({
        "smoothing": {"method": "median", "window": 3},
        "health": {"stall_s": 20},
        "inference": {"max_side": 640},
        "cameras": [
            cam(name="a", regions=[
                {"name": "r1", "polygon": [[0, 0], [1, 0], [1, 1]],
                 "smoothing": {"method": "none"}},
                {"name": "r2", "polygon": [[0, 0], [1, 0], [1, 1]]}]),
            cam(name="b", smoothing={"method": "ema", "rise_s": 1}, health={"stall_s": 60},
                reconnect={"initial_s": 2, "max_s": 4}, max_side=480),
        ]})
    a, b = cfg.cameras
    assert cfg.region_smoothing(a, a.regions[0]).method == "none"
    assert cfg.region_smoothing(a, a.regions[1]) == SmoothingConfig(method="median", window=3)
    assert cfg.camera_smoothing(b).rise_s == 1
    assert cfg.camera_health(a).stall_s == 20 and cfg.camera_health(b).stall_s == 60
    assert cfg.camera_reconnect(a).max_s == 30 and cfg.camera_reconnect(b).max_s == 4
    assert cfg.camera_max_side(a) == 640 and cfg.camera_max_side(b) == 480
    assert cfg.camera("b") is b
    with pytest.raises(KeyError):
        cfg.camera("x")


def test_defaults() -> None:
    cfg = ServiceConfig.model_validate({"cameras": [cam()]})
    assert cfg.mqtt is None and cfg.http.port == 8080 and cfg.http.host == "127.0.0.1"
    assert cfg.inference.backend == "auto" and cfg.inference.model is None
    assert cfg.camera_max_side(cfg.cameras[0]) == DEFAULT_MAX_SIDE
    c = cfg.cameras[0]
    assert (c.fps, c.loop, c.enabled, c.rtsp_transport, c.kind) == (2.0, False, True, "tcp", "rtsp")
    assert isinstance(RegionConfig(name="r", polygon=[(0, 0), (1, 0), (1, 1)]), RegionSpec)


def test_alert_rule_hysteresis_default() -> None:
    assert AlertRule(level="warning", above=40).below == 40
    assert AlertRule(level="warning", above=40, below=30).exit_below == 30
    with pytest.raises(ValidationError, match="must not exceed above"):
        AlertRule(level="warning", above=40, below=41)
    with pytest.raises(ValidationError):
        AlertRule(level="warning", above=1, renotify_s=0)


def test_spool_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path))
    assert default_spool_dir() == str(tmp_path / "spool")
    assert MqttConfig(host="h").effective_spool_dir == str(tmp_path / "spool")
    monkeypatch.delenv("STREAMCOUNT_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_spool_dir() == str(tmp_path / "state" / "streamcount" / "spool")


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "ca.pem").write_text("x")
    cfg = ServiceConfig.model_validate({
        "mqtt": {"host": "h", "spool_dir": "state/spool",
                 "tls": {"enabled": True, "ca_file": "ca.pem"}},
        "sinks": {"jsonl": "out/events.jsonl", "csv_dir": "out"},
        "cameras": [cam(source="v.mp4", loop=True)]}, context={"base_dir": tmp_path})
    assert cfg.cameras[0].source == str(tmp_path / "v.mp4")
    assert cfg.mqtt.spool_dir == str(tmp_path / "state" / "spool")
    assert cfg.mqtt.tls.ca_file == str(tmp_path / "ca.pem")
    assert cfg.sinks.jsonl == str(tmp_path / "out" / "events.jsonl")


def test_tls_checks(tmp_path: Path) -> None:
    assert TlsConfig(enabled=True).ca_file is None  # system CAs
    with pytest.raises(ValidationError, match="file not found"):
        TlsConfig(enabled=True, ca_file=str(tmp_path / "missing.pem"))
    (tmp_path / "k.pem").write_text("x")
    with pytest.raises(ValidationError, match="keyfile needs certfile"):
        TlsConfig(enabled=True, keyfile=str(tmp_path / "k.pem"))


def test_mqtt_rules() -> None:
    assert MqttConfig(host="h", username=42, password=1234).password == "1234"
    assert MqttConfig(host="h", username="", password="").username is None
    assert MqttConfig(host="h", topic_prefix="site/a/").topic_prefix == "site/a"
    for bad in ({"qos_alert": 0}, {"topic_prefix": "a/#"}, {"port": 0}, {"hots": "x"}):
        with pytest.raises(ValidationError):
            MqttConfig(host="h", **bad)


@pytest.mark.parametrize("source,kind", [("rtsp://h/s", "rtsp"), ("RTSPS://h/s", "rtsp"),
                                         ("https://h/x.m3u8", "http"), ("/dev/video2", "device"),
                                         ("clips/a.mp4", "file")])
def test_source_kind(source: str, kind: str) -> None:
    assert source_kind(source) == kind


def test_camera_name_pattern_and_unique_regions() -> None:
    with pytest.raises(ValidationError):
        CameraConfig(name="front door", source="rtsp://h/s")
    poly = [(0, 0), (1, 0), (1, 1)]
    with pytest.raises(ValidationError, match="duplicate region name 'r'"):
        CameraConfig(name="c", source="rtsp://h/s",
                     regions=[RegionConfig(name="r", polygon=poly),
                              RegionConfig(name="r", polygon=poly)])
    with pytest.raises(ValidationError, match="reserved"):
        RegionConfig(name="all", polygon=poly)
