"""``streamcount validate CONFIG``: exit codes and output format, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamcount.cli.main import main


def test_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_USER", "op")
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("mqtt: {host: 127.0.0.1, username: ${MQTT_USER}}\n"
                   "cameras:\n"
                   "  - name: a\n    source: rtsp://u:secretpw@192.0.2.1/s\n"
                   "    regions:\n"
                   "      - {name: left, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}\n"
                   "      - {name: right, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}\n"
                   "  - name: b\n    source: /dev/video0\n")
    assert main(["validate", str(cfg)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"{cfg}: OK (2 cameras, 2 regions)"
    assert "secretpw" not in out.out + out.err


def test_every_problem_printed_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTT_PASS", raising=False)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("mqtt:\n  host: b\n  password: ${MQTT_PASS}\n"
                   "cameras:\n"
                   "  - name: a\n    source: rtsp://admin:hunter2@:554/s\n"
                   "  - name: a\n    source: rtsp://h/s\n    colour: red\n")
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:4] == [
        f"{cfg}:3: mqtt.password: environment variable MQTT_PASS is not set",
        f"{cfg}:6: cameras[0].source: URL has no host: rtsp://***@:554/s",
        f"{cfg}:7: cameras[1].name: duplicate camera name 'a'",
        f"{cfg}:9: cameras[1].colour: unknown key 'colour'",
    ]
    assert err[4] == f"{cfg}: 4 problems"
    assert not any("hunter2" in line for line in err)


def test_console_script_exit_code(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("cameras:\n  - name: a\n    source: rtsp://h/s\n    fps: fast\n")
    r = subprocess.run([sys.executable, "-m", "streamcount", "validate", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith(f"{cfg}:4: cameras[0].fps: ")
