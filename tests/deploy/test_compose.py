"""deploy/compose renders with the real compose tooling (``docker-compose config``), its broker
refuses anonymous clients, and the service config it mounts validates with the secret it gets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamcount.config.loader import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"


@pytest.fixture(scope="module")
def rendered() -> dict:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; "
                    "`make test` installs it)")
    p = subprocess.run([tool, "-f", str(COMPOSE / "compose.yaml"), "config"], cwd=COMPOSE,
                       capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "VIDEO": "/tmp/clip.avi"})
    assert p.returncode == 0, p.stderr
    return yaml.safe_load(p.stdout)


def volumes(service: dict) -> dict[str, tuple[str, bool]]:
    """``{target: (source, read_only)}`` from either rendering (v1 short, v2 long syntax)."""
    out = {}
    for v in service["volumes"]:
        if isinstance(v, str):
            src, dst, *mode = v.split(":")
            out[dst] = (src, "ro" in mode)
        else:
            out[v["target"]] = (v.get("source", ""), bool(v.get("read_only")))
    return out


def test_compose_renders_broker_camera_and_service(rendered: dict) -> None:
    services = rendered["services"]
    assert set(services) == {"mosquitto", "camera", "streamcount"}
    sc = services["streamcount"]
    assert sc["restart"] == "unless-stopped" and sc["stop_signal"] == "SIGTERM"
    assert "/healthz" in " ".join(sc["healthcheck"]["test"])
    mounts = volumes(sc)
    assert mounts["/config"] == (str(COMPOSE / "config"), True)
    assert mounts["/var/lib/streamcount"][0].endswith("streamcount-state")
    assert sc["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert sc["build"]["dockerfile"] == "deploy/docker/Dockerfile.cpu"
    assert [s if isinstance(s, str) else s["source"] for s in sc["secrets"]] == ["mqtt_password"]
    assert volumes(services["camera"])["/media/clip"] == ("/tmp/clip.avi", True)
    assert "mqtt_password" in rendered["secrets"]


def test_broker_needs_a_password() -> None:
    conf = (COMPOSE / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "password_file /mosquitto/data/passwd" in conf
    assert "mosquitto_passwd -b" in (COMPOSE / "mosquitto" / "start.sh").read_text()


def test_the_mounted_service_config_validates(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mqtt_password").write_text("s3cret\n")
    monkeypatch.setenv("STREAMCOUNT_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("MQTT_HOST", "mosquitto")
    cfg = load_config(COMPOSE / "config" / "service.yaml")
    assert cfg.mqtt is not None and cfg.mqtt.password == "s3cret"
    assert cfg.mqtt.username == "streamcount" and cfg.mqtt.host == "mosquitto"
    assert cfg.http.host == "0.0.0.0" and cfg.http.port == 8080
    assert [c.source for c in cfg.cameras] == ["rtsp://camera:8554/lobby"]
