"""Home Assistant discovery configs (the broker round trip is in tests/integration)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from streamcount.config.schema import HomeAssistantConfig, ServiceConfig
from streamcount.sinks.homeassistant import discovery_configs


def config(**kw: object) -> ServiceConfig:
    return ServiceConfig.model_validate({
        "mqtt": {"host": "broker"}, "homeassistant": {"discovery_prefix": "ha/"},
        "cameras": [{"name": "gate.1", "source": "rtsp://192.0.2.1/s", "regions": [
            {"name": "queue.a", "polygon": [[0, 0], [1, 0], [1, 1]],
             "alerts": [{"level": "critical", "above": 40}, {"level": "warning", "above": 20}]},
            {"name": "plain", "polygon": [[0, 0], [1, 0], [1, 1]]}]}], **kw})


def test_topics_ids_and_level_order() -> None:
    cfg = config()
    assert cfg.homeassistant is not None
    assert cfg.homeassistant.effective_birth_topic == "ha/status"
    out = discovery_configs(cfg.cameras, "sc", cfg.homeassistant)
    assert sorted(out) == [
        "ha/binary_sensor/streamcount_gate_1/queue_a_critical/config",
        "ha/binary_sensor/streamcount_gate_1/queue_a_warning/config",
        "ha/sensor/streamcount_gate_1/plain_count/config",
        "ha/sensor/streamcount_gate_1/queue_a_count/config"]
    warn = json.loads(out["ha/binary_sensor/streamcount_gate_1/queue_a_warning/config"])
    assert warn["value_template"] == \
        "{{ 'ON' if value_json.level in [\"warning\", \"critical\"] else 'OFF' }}"
    assert warn["state_topic"] == "sc/gate.1/queue.a/count"  # topics keep the real names
    assert warn["default_entity_id"] == "binary_sensor.streamcount_gate_1_queue_a_warning"


def test_needs_mqtt() -> None:
    with pytest.raises(ValidationError, match="needs the mqtt section"):
        ServiceConfig.model_validate({"homeassistant": {}, "cameras": [
            {"name": "c", "source": "rtsp://192.0.2.1/s"}]})
    assert HomeAssistantConfig().discovery_prefix == "homeassistant"
