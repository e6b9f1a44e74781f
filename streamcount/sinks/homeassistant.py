"""Home Assistant MQTT discovery: the config messages that make every region a sensor.

With ``homeassistant: {discovery_prefix: homeassistant}`` in the service config, the MQTT sink
publishes, retained (``D`` = the discovery prefix, ``P`` = ``mqtt.topic_prefix``):

- per region, ``D/sensor/streamcount_<camera>/<region>_count/config``: a ``sensor`` of people
  (``state_class: measurement``) reading ``P/<camera>/<region>/count``; the whole count payload
  (raw, state, level, reason, density, los...) as attributes;
- per calibrated region (``area_m2`` or ``ground``), ``.../<region>_density/config``: people/m²;
- per alert rule, ``D/binary_sensor/streamcount_<camera>/<region>_<level>/config``: on while
  the region's level is that rule's level or a higher one (``problem`` device class);
- one device per camera (``identifiers: [streamcount_<camera>]``), shared by its entities.

Availability follows the camera, not the process: every entity reads the camera's retained
status topic ``P/<camera>/status`` through a value template (``online`` while it streams).
With sharding a camera moves between replicas; whichever replica runs it publishes that topic,
so the entities stay correct across the move (and every replica publishes the same discovery
configs for the cameras it owns, with the same ``unique_id``). Entity ids are set with
``default_entity_id`` (not the deprecated ``object_id``).

The configs are re-published when Home Assistant's birth message (``D/status`` = ``online``)
arrives, and a reload that removes a region or rule clears its config (an empty retained
payload), which removes the entity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from streamcount import __version__ as VERSION
from streamcount.config.schema import CameraConfig, HomeAssistantConfig

#: the availability value template: a camera is available while its reader streams
AVAILABILITY_TEMPLATE = "{{ 'online' if value_json.state == 'streaming' else 'offline' }}"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _slug(name: str) -> str:
    """``name`` with characters a discovery topic or entity id cannot hold as ``_``."""
    return _UNSAFE.sub("_", name).lower()


def _device(camera: str) -> dict[str, Any]:
    return {"identifiers": [f"streamcount_{_slug(camera)}"], "name": f"{camera} (streamcount)",
            "manufacturer": "streamcount", "model": "crowd counting camera",
            "sw_version": VERSION}


def discovery_configs(cameras: Iterable[CameraConfig], topic_prefix: str,
                      ha: HomeAssistantConfig) -> dict[str, str]:
    """``{config topic: JSON payload}`` for every region and alert rule of ``cameras``."""
    out: dict[str, str] = {}
    for cam in cameras:
        node = f"streamcount_{_slug(cam.name)}"
        status = f"{topic_prefix}/{cam.name}/status"
        common = {"availability": [{"topic": status, "value_template": AVAILABILITY_TEMPLATE}],
                  "device": _device(cam.name),
                  "origin": {"name": "streamcount", "sw_version": VERSION}}
        for region in cam.regions:
            state = f"{topic_prefix}/{cam.name}/{region.name}/count"
            rid = f"{node}_{_slug(region.name)}"
            entities: list[tuple[str, str, dict[str, Any]]] = [("sensor", "count", {
                "name": f"{region.name} people", "state_topic": state,
                "value_template": "{{ value_json.count }}", "unit_of_measurement": "people",
                "state_class": "measurement", "icon": "mdi:account-group",
                "json_attributes_topic": state, "suggested_display_precision": 1})]
            if region.area_m2 is not None or region.ground is not None:
                entities.append(("sensor", "density", {
                    "name": f"{region.name} density", "state_topic": state,
                    "value_template": "{{ value_json.density }}",
                    "unit_of_measurement": "p/m²", "state_class": "measurement",
                    "icon": "mdi:account-multiple", "suggested_display_precision": 2}))
            levels = [r.level for r in sorted(region.alerts,
                                              key=lambda r: r.in_counts(
                                                  region.floor_area()).above or 0.0)]
            for i, level in enumerate(levels):
                at_or_above = json.dumps(levels[i:])
                entities.append(("binary_sensor", _slug(level), {
                    "name": f"{region.name} {level}", "state_topic": state,
                    "value_template": f"{{{{ 'ON' if value_json.level in {at_or_above} "
                                      f"else 'OFF' }}}}",
                    "device_class": "problem"}))
            for component, suffix, fields in entities:
                uid = f"{rid}_{suffix}"
                payload = {**fields, "unique_id": uid,
                           "default_entity_id": f"{component}.{uid}", **common}
                topic = f"{ha.discovery_prefix}/{component}/{node}/{_slug(region.name)}_" \
                        f"{suffix}/config"
                out[topic] = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return out
