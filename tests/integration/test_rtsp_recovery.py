"""RTSP outage and recovery, end to end with real parts: a gst-rtsp-server serving an H.264
clip made from vtest.avi, the service (real model file, max side 320, 2 fps) and a real
mosquitto broker; assertions on what MQTT subscribers see.

The region has a rule ``above: -1``, which any real count satisfies, so the region is in
``warning`` from its first count. While the stream is down the counts must be ``unknown``:
if an outage were counted as zero or as the last value, the region would stay ``warning``
and no ``unknown`` transition would be published; if frames were substituted (black or
stale), counts would keep arriving as ``ok``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamcount.config.loader import load_config
from streamcount.pipeline.service import Service
from tests.integration.mosquitto import Mosquitto, Subscriber
from tests.integration.rtsp_server import (RtspServer, gst_rtsp_missing, make_h264_clip,
                                           repeat_clip)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PREFIX = "sc"
RECONNECT_MAX_S = 2.0
#: time to open an RTSP stream (probing waits for a keyframe) plus scheduling slack
OPEN_SLACK_S = 12.0


@pytest.fixture(scope="module")
def rtsp_clip(tmp_path_factory: pytest.TempPathFactory, vtest_avi: Path) -> Path:
    reason = gst_rtsp_missing()
    if reason:
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("rtsp")
    clip = make_h264_clip(vtest_avi, d / "clip60.mp4", seconds=60, width=384, gop=20)
    return repeat_clip(clip, d / "clip180.mp4", 3)


def payloads(sub: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.on(topic)]


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``pred``; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_rtsp_outage_goes_unknown_and_recovers(tmp_path: Path, rtsp_clip: Path,
                                               model_file: Path, broker: Mosquitto) -> None:
    with RtspServer(rtsp_clip) as server:
        cfg_path = tmp_path / "svc.yaml"
        cfg_path.write_text(f"""
mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: {PREFIX},
        spool_dir: {tmp_path / 'spool'}, count_interval_s: 30}}
http: {{port: 0}}
inference: {{model: {model_file}, backend: torch, max_side: 320, threads: 1}}
smoothing: {{method: none}}
health: {{stall_s: 5}}
reconnect: {{initial_s: 0.5, max_s: {RECONNECT_MAX_S}, jitter: 0.2}}
sinks: {{jsonl: {tmp_path / 'events.jsonl'}}}
cameras:
  - name: door
    source: {server.url}
    fps: 2
    regions:
      - name: left
        polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
        alerts: [{{level: warning, above: -1}}]
""")
        sub = Subscriber(broker, [f"{PREFIX}/#"])
        status_t = f"{PREFIX}/door/status"
        count_t = f"{PREFIX}/door/left/count"
        alert_t = f"{PREFIX}/door/left/alert"
        svc = Service(load_config(cfg_path), cfg_path)
        svc.start()
        try:
            # 1. streaming, counted, in warning
            wait_until(lambda: any(p["state"] == "streaming" for p in payloads(sub, status_t)),
                       60, "status streaming")
            wait_until(lambda: any(p["state"] == "ok" for p in payloads(sub, count_t)),
                       60, "an ok count")
            wait_until(lambda: len(payloads(sub, alert_t)) >= 1, 30, "the first alert")
            first = payloads(sub, alert_t)
            assert [(a["previous"], a["level"]) for a in first] == [("normal", "warning")]

            # 2. the server dies mid-stream
            server.kill()
            killed = time.monotonic()
            wait_until(lambda: payloads(sub, status_t)[-1]["state"] == "reconnecting", 30,
                       "status reconnecting")
            wait_until(lambda: payloads(sub, count_t)[-1]["state"] == "unknown", 30,
                       "unknown counts")
            down = payloads(sub, count_t)[-1]
            assert down["count"] is None and down["level"] == "unknown"
            assert down["reason"].startswith("offline (reconnecting")
            n_counts = len(payloads(sub, count_t))
            # stay down for several backoff periods: nothing is counted meanwhile
            time.sleep(3 * RECONNECT_MAX_S)
            during = payloads(sub, count_t)[n_counts:]
            assert all(p["state"] == "unknown" for p in during)
            reader = svc.reader("door")
            assert reader is not None and reader.reconnect_attempts >= 2
            alerts = payloads(sub, alert_t)
            assert [(a["previous"], a["level"]) for a in alerts] == [
                ("normal", "warning"), ("warning", "unknown")]
            assert time.monotonic() - killed > 2 * RECONNECT_MAX_S

            # 3. the server comes back: streaming again within the backoff bound
            server.start()
            restarted = time.monotonic()
            n_status = len(payloads(sub, status_t))
            back = wait_until(lambda: any(p["state"] == "streaming"
                                          for p in payloads(sub, status_t)[n_status:]),
                              RECONNECT_MAX_S + OPEN_SLACK_S, "status streaming again")
            assert back - restarted <= RECONNECT_MAX_S + OPEN_SLACK_S
            wait_until(lambda: payloads(sub, count_t)[-1]["state"] == "ok", 30,
                       "ok counts again")
            assert reader.reconnects == 1
            wait_until(lambda: len(payloads(sub, alert_t)) >= 3, 30, "the alert re-evaluated")
            alerts = payloads(sub, alert_t)
            assert [(a["previous"], a["level"]) for a in alerts] == [
                ("normal", "warning"), ("warning", "unknown"), ("unknown", "warning")]
            assert len({a["id"] for a in alerts}) == 3
            state = svc.snapshot()["cameras"]["door"]
            assert state["state"] == "streaming" and state["reconnects"] == 1
        finally:
            svc.stop()
            sub.close()
    statuses = [p["state"] for p in payloads(sub, status_t)]
    assert statuses[-1] == "stopped"
    assert "reconnecting" in statuses and statuses.count("streaming") >= 2
