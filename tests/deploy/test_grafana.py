"""The Grafana dashboard parses and every metric its queries use is one a running
MetricsServer really exports (scraped after events of a calibrated region)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from streamcount.messages import AlertEvent, CountState, CountUpdate
from streamcount.sinks.metrics import MetricsServer

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "streamcount.json"
_METRIC = re.compile(r"\b(streamcount_[a-z0-9_]+)")


def snapshot() -> dict[str, object]:
    return {"running": True, "cameras": {"gate": {
        "state": "streaming", "health": None, "decoded": 10, "dropped": 0, "processed": 5,
        "reconnects": 1, "reconnect_attempts": 1, "decode_fps": 25.0, "processed_fps": 2.0,
        "source_fps": 25.0, "last_frame_age_s": 0.1, "frame_age_p50_s": 0.2,
        "frame_age_p95_s": 0.3, "unhealthy_frames": 0}}}


def test_dashboard_queries_use_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in _METRIC.findall(e)}
    assert {"streamcount_region_density", "streamcount_camera_processed_fps",
            "streamcount_camera_reconnects_total", "streamcount_region_alert_level",
            "streamcount_inference_seconds_bucket"} <= used
    m = MetricsServer(snapshot, "127.0.0.1", 0)
    m.start()
    try:
        m.handle(CountUpdate("gate", "plaza", 1.0, 30.0, 31.0, CountState.OK, density=0.8,
                             los="D", area_m2=40.0))
        m.handle(AlertEvent("1", "gate", "plaza", "warning", "normal", 31.0, 30.0, 1.0))
        m.observe_batch(0.05, 1)
        with urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        m.shutdown()
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                if line.startswith("streamcount_")}
    assert used <= exported, used - exported
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
