"""Counting methods and the automatic scale in the live service, end to end: the real
vtest.avi replayed as two cameras, the packaged density model and person detector, a real
mosquitto and the HTTP state API and console.

* ``plaza`` (defaults: ``counting: auto``, ``scale: auto``): its count payloads on MQTT, its
  regions in ``/api/state`` and its camera status say how each count was made; the automatic
  scale settles below 1 (walkers about 80 px tall) and is shown with the person height; the
  console's density endpoint carries the boxes of the people counted by detection.
* ``calibrated`` has an explicit ``max_side`` (what ``streamcount calibrate`` writes): it wins,
  the model input stays at that side.
* A reload that changes only the fps keeps the scale estimate (it is camera state).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamcount.config.loader import load_config
from streamcount.pipeline.counting import APPLY_AFTER
from streamcount.pipeline.service import Service
from tests.integration.mosquitto import Mosquitto, Subscriber

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PREFIX = "sc"
METHODS = {"detect", "hybrid", "density"}


def write_config(path: Path, broker: Mosquitto, clip: Path, fps: float = 5) -> Path:
    path.write_text(f"""
mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: {PREFIX},
        spool_dir: {path.parent / 'spool'}, stats_interval_s: 1}}
http: {{port: 0}}
inference: {{backend: openvino, threads: 2}}
smoothing: {{method: none}}
cameras:
  - name: plaza
    source: {clip}
    loop: true
    fps: {fps}
    regions:
      - name: left
        polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
  - name: calibrated
    source: {clip}
    loop: true
    fps: 2
    max_side: 384
""")
    return path


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_methods_and_scale_on_mqtt_state_and_console(tmp_path: Path, broker: Mosquitto,
                                                     vtest_avi: Path) -> None:
    cfg_path = write_config(tmp_path / "service.yaml", broker, vtest_avi)
    sub = Subscriber(broker, [f"{PREFIX}/#"])
    svc = Service(load_config(cfg_path), cfg_path)
    svc.start()
    try:
        base = f"http://127.0.0.1:{svc.http_port}"

        def plaza() -> dict[str, Any]:
            return get_json(f"{base}/api/state")["cameras"]["plaza"]

        wait_until(lambda: (plaza().get("scale") or {}).get("frames", 0) >= APPLY_AFTER + 2,
                   120, "the automatic scale of plaza")
        cam = plaza()
        assert cam["counting"] == "auto" and cam["method"] in METHODS
        scale = cam["scale"]
        assert scale["mode"] == "auto" and 0.3 < scale["scale"] < 0.8, scale
        assert 60 <= scale["person_height_px"] <= 120 and not scale["detect_only"]
        assert max(scale["input_size"]) < 768  # the density model sees a smaller frame now
        assert cam["regions"]["all"]["method"] in METHODS
        assert cam["regions"]["left"]["method"] in METHODS

        # the operator's max_side wins over the automatic scale
        cal = get_json(f"{base}/api/state")["cameras"]["calibrated"]
        assert cal["scale"]["mode"] == "max_side" and cal["scale"]["scale"] is None
        wait_until(lambda: get_json(f"{base}/api/state")["cameras"]["calibrated"]["scale"]
                   ["input_size"] is not None, 60, "a frame of calibrated")
        cal = get_json(f"{base}/api/state")["cameras"]["calibrated"]
        assert cal["scale"]["input_size"] == [288, 384] and cal["method"] in METHODS

        # MQTT: count payloads carry the method; stats carry method and scale per camera
        def counts() -> list[dict[str, Any]]:
            return [json.loads(m.payload) for m in sub.on(f"{PREFIX}/plaza/all/count")]

        wait_until(lambda: any(p["state"] == "ok" for p in counts()), 30, "plaza counts")
        ok = [p for p in counts() if p["state"] == "ok"]
        assert all(p["method"] in METHODS for p in ok)
        assert any(p["method"] != "density" for p in ok)  # sparse walkers: detection counts
        def plaza_stats() -> list[dict[str, Any]]:
            return [json.loads(m.payload)["cameras"].get("plaza", {})
                    for m in sub.on(f"{PREFIX}/stats")]

        wait_until(lambda: any((s.get("scale") or 1) < 1 for s in plaza_stats()), 30,
                   "stats with the automatic scale")
        assert plaza_stats()[-1]["method"] in METHODS

        # console: the people counted by detection, as frame fractions
        def boxes() -> Any:
            return get_json(f"{base}/api/cameras/plaza/density").get("boxes")

        wait_until(lambda: bool(boxes()), 30, "boxes on the console")
        for x1, y1, x2, y2 in boxes():
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1

        # a reload that changes only the fps keeps the scale estimate
        frames = plaza()["scale"]["frames"]
        cfg_path = write_config(cfg_path, broker, vtest_avi, fps=4)
        result = svc.reload_from_file()
        assert result.reconfigured == ("plaza",)
        assert plaza()["scale"]["frames"] >= frames and plaza()["scale"]["scale"] < 1
    finally:
        svc.stop()
        sub.close()
