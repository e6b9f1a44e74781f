"""Home Assistant MQTT discovery against a real mosquitto and a running service on vtest.avi:
every config parses and names a unique_id, a device and an availability topic that follows the
camera; the state topic really receives the region's count (and density); HA's birth message
brings the configs back; a reload that removes a region clears its configs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streamcount.config.loader import load_config
from streamcount.pipeline.service import Service
from tests.integration.mosquitto import Mosquitto, Subscriber

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

PREFIX = "sc"
HA = "homeassistant"


def write_config(path: Path, broker: Mosquitto, model: Path, clip: Path, *,
                 with_door: bool = True) -> Path:
    door = ("      - name: door\n        polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]\n"
            "        alerts: [{level: busy, above: 100}]\n") if with_door else ""
    path.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: {PREFIX}, "
        f"client_id: streamcount-ha, spool_dir: {path.parent / 'spool'}}}\n"
        f"homeassistant: {{discovery_prefix: {HA}}}\n"
        "http: {enabled: false}\n"
        f"inference: {{model: {model}, backend: torch, max_side: 160, threads: 1}}\n"
        "cameras:\n"
        f"  - name: hall\n    source: {clip}\n    loop: true\n    fps: 2\n"
        "    regions:\n"
        "      - name: floor\n        polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n"
        "        area_m2: 40\n"
        "        alerts: [{level: warning, above: 50}, {level: crush, above_density: 4}]\n"
        f"{door}")
    return path


def configs(sub: Subscriber) -> dict[str, str]:
    """The last payload of every discovery config topic."""
    out: dict[str, str] = {}
    for m in list(sub.messages):
        if m.topic.startswith(HA + "/") and m.topic.endswith("/config"):
            out[m.topic] = m.text
    return out


def test_discovery_end_to_end(tmp_path: Path, broker: Mosquitto, model_file: Path,
                              vtest_avi: Path) -> None:
    path = write_config(tmp_path / "service.yaml", broker, model_file, vtest_avi)
    sub = Subscriber(broker, [f"{HA}/#", f"{PREFIX}/#"])
    svc = Service(load_config(path), path)
    svc.start()
    try:
        expected = {f"{HA}/sensor/streamcount_hall/floor_count/config",
                    f"{HA}/sensor/streamcount_hall/floor_density/config",
                    f"{HA}/binary_sensor/streamcount_hall/floor_warning/config",
                    f"{HA}/binary_sensor/streamcount_hall/floor_crush/config",
                    f"{HA}/sensor/streamcount_hall/door_count/config",
                    f"{HA}/binary_sensor/streamcount_hall/door_busy/config"}
        assert sub.wait_for(lambda _: expected <= configs(sub).keys(), 30), configs(sub)
        assert set(configs(sub)) == expected
        parsed = {t: json.loads(p) for t, p in configs(sub).items()}
        assert len({p["unique_id"] for p in parsed.values()}) == len(parsed)
        for topic, p in parsed.items():
            component = topic.split("/")[1]
            assert p["default_entity_id"] == f"{component}.{p['unique_id']}"
            assert "object_id" not in p
            assert p["device"]["identifiers"] == ["streamcount_hall"]
            assert p["availability"][0]["topic"] == f"{PREFIX}/hall/status"
            assert "value_json.state" in p["availability"][0]["value_template"]
        count = parsed[f"{HA}/sensor/streamcount_hall/floor_count/config"]
        assert count["state_class"] == "measurement" and count["unit_of_measurement"] == "people"
        assert count["state_topic"] == f"{PREFIX}/hall/floor/count"
        assert count["json_attributes_topic"] == count["state_topic"]
        crush = parsed[f"{HA}/binary_sensor/streamcount_hall/floor_crush/config"]
        warning = parsed[f"{HA}/binary_sensor/streamcount_hall/floor_warning/config"]
        # crush (4 p/m² x 40 m² = 160 people) ranks above warning (50): warning is on for both
        assert '"warning", "crush"' in warning["value_template"]
        assert '["crush"]' in crush["value_template"]

        # the state topic really carries the region's count and density; the camera streams
        def state(topic: str) -> dict[str, object] | None:
            msgs = [m for m in sub.on(topic) if m.payload]
            return json.loads(msgs[-1].text) if msgs else None

        assert sub.wait_for(lambda _: (state(count["state_topic"]) or {}).get("state") == "ok",
                            60)
        s = state(count["state_topic"])
        assert s is not None and s["count"] is not None and s["los"] in tuple("ABCDEF")
        assert s["density"] == pytest.approx(float(s["count"]) / 40, abs=2e-3)  # type: ignore
        assert (state(f"{PREFIX}/hall/status") or {}).get("state") == "streaming"

        # Home Assistant restarts: its birth message brings every config back
        before = len(sub.on(f"{HA}/sensor/streamcount_hall/floor_count/config"))
        ha = Subscriber(broker, ["test/unused"])
        ha.client.publish(f"{HA}/status", "online", qos=1).wait_for_publish(5)
        assert sub.wait_for(lambda _: len(sub.on(
            f"{HA}/sensor/streamcount_hall/floor_count/config")) > before, 10)
        ha.close()

        # a reload removes the door region: its configs are cleared (empty, retained)
        write_config(path, broker, model_file, vtest_avi, with_door=False)
        svc.reload(load_config(path))
        door = [t for t in expected if "/door_" in t]
        assert sub.wait_for(lambda _: all(
            sub.on(t) and sub.on(t)[-1].payload == b"" for t in door), 10)
    finally:
        svc.stop()
        sub.close()
    # a fresh subscriber sees the retained configs of the remaining entities only
    late = Subscriber(broker, [f"{HA}/#"])
    time.sleep(1.0)
    retained = {m.topic for m in late.messages if m.retain and m.payload}
    late.close()
    assert retained == expected - set(door)
