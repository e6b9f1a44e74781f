"""MetricsServer: Prometheus text from its own registry, /healthz, /api/state, port 0."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest

from streamcount.messages import AlertEvent, CountState, CountUpdate, StatusEvent
from streamcount.sinks.metrics import MetricsServer


class State:
    """What the service's snapshot returns (a plain provider)."""

    def __init__(self) -> None:
        self.running = True
        self.cameras: dict[str, dict[str, Any]] = {
            "gate": {"state": "streaming", "health": None, "decoded": 120, "dropped": 7,
                     "processed": 20, "reconnects": 1, "reconnect_attempts": 3,
                     "decode_fps": 25.0, "processed_fps": 2.0, "source_fps": 25.0,
                     "last_frame_age_s": 0.04, "frame_age_p50_s": 0.12,
                     "frame_age_p95_s": 0.3, "unhealthy_frames": 0},
            "hall": {"state": "reconnecting", "health": "offline (reconnecting: stream ended)",
                     "decoded": 0, "dropped": 0, "processed": 0, "reconnects": 0,
                     "reconnect_attempts": 2, "decode_fps": 0.0, "processed_fps": 0.0,
                     "source_fps": None, "last_frame_age_s": None},
        }

    def __call__(self) -> dict[str, Any]:
        return {"running": self.running, "cameras": {k: dict(v) for k, v in self.cameras.items()},
                "inference": {"backend": "torch", "frames": 20}}


@pytest.fixture
def server() -> Iterator[tuple[MetricsServer, State]]:
    state = State()
    m = MetricsServer(state, "127.0.0.1", 0)
    m.start()
    yield m, state
    m.shutdown()


def get(m: MetricsServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{m.port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def events() -> list[object]:
    return [
        StatusEvent("gate", "streaming", None, 1.0, 25.0),
        CountUpdate("gate", "queue", 2.0, raw=12.4, count=11.5, state=CountState.OK,
                    level="warning"),
        AlertEvent("01", "gate", "queue", "warning", "normal", 11.5, 10.0, 2.0),
        CountUpdate("hall", "floor", 2.0, raw=None, count=None, state=CountState.UNKNOWN,
                    reason="offline (reconnecting: stream ended)", level="unknown"),
    ]


def test_metrics_text(server: tuple[MetricsServer, State]) -> None:
    m, _ = server
    assert m.port and m.port > 0
    for e in events():
        m.handle(e)
    m.observe_batch(0.042, 2)
    m.observe_batch(0.080, 1)
    code, body = get(m, "/metrics")
    text = body.decode()
    assert code == 200
    expected = [
        'streamcount_camera_decoded_frames_total{camera="gate"} 120.0',
        'streamcount_camera_dropped_frames_total{camera="gate"} 7.0',
        'streamcount_camera_reconnects_total{camera="gate"} 1.0',
        'streamcount_camera_decoded_fps{camera="gate"} 25.0',
        'streamcount_camera_processed_fps{camera="gate"} 2.0',
        'streamcount_camera_last_frame_age_seconds{camera="gate"} 0.04',
        'streamcount_camera_state{camera="hall",state="reconnecting"} 1.0',
        'streamcount_camera_state{camera="hall",state="streaming"} 0.0',
        'streamcount_camera_healthy{camera="hall"} 0.0',
        'streamcount_camera_healthy{camera="gate"} 1.0',
        'streamcount_region_count{camera="gate",region="queue"} 11.5',
        'streamcount_region_raw_count{camera="gate",region="queue"} 12.4',
        'streamcount_region_known{camera="hall",region="floor"} 0.0',
        'streamcount_region_alert_level{camera="gate",level="warning",region="queue"} 1.0',
        'streamcount_inference_seconds_count 2.0',
        'streamcount_inference_seconds_bucket{le="0.05"} 1.0',
        'streamcount_inference_batch_size_sum 3.0',
    ]
    for line in expected:
        assert line in text, line
    # unknown counts have no count sample, and no last frame age before the first frame
    assert 'streamcount_region_count{camera="hall"' not in text
    assert 'last_frame_age_seconds{camera="hall"}' not in text
    # our own registry, never the process-global one
    assert "streamcount_inference_seconds" not in prometheus_client.generate_latest().decode()


def test_healthz_and_state(server: tuple[MetricsServer, State]) -> None:
    m, state = server
    for e in events():
        m.handle(e)
    code, body = get(m, "/healthz")
    assert code == 200
    h = json.loads(body)
    assert h["status"] == "ok" and h["cameras"]["gate"]["state"] == "streaming"
    assert h["cameras"]["hall"]["health"].startswith("offline")
    code, body = get(m, "/api/state")
    s = json.loads(body)
    assert code == 200
    assert s["cameras"]["gate"]["regions"]["queue"]["count"] == 11.5
    assert s["cameras"]["gate"]["regions"]["queue"]["level"] == "warning"
    assert s["cameras"]["hall"]["regions"]["floor"]["state"] == "unknown"
    assert s["inference"]["frames"] == 20
    state.running = False
    assert get(m, "/healthz")[0] == 503
    assert get(m, "/missing")[0] == 404


def test_removed_camera_series_disappear(server: tuple[MetricsServer, State]) -> None:
    m, state = server
    for e in events():
        m.handle(e)
    del state.cameras["hall"]
    text = get(m, "/metrics")[1].decode()
    assert 'camera="hall"' not in text
    assert 'streamcount_region_count{camera="gate",region="queue"} 11.5' in text


def test_shutdown_releases_the_port(server: tuple[MetricsServer, State]) -> None:
    m, _ = server
    port = m.port
    m.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again


def test_density_metrics_and_state(server: tuple[MetricsServer, State]) -> None:
    m, _ = server
    m.handle(CountUpdate("gate", "plaza", 3.0, raw=24.0, count=25.0, state=CountState.OK,
                         density=2.5, los="F", area_m2=10.0))
    m.handle(CountUpdate("gate", "queue", 3.0, raw=2.0, count=2.0, state=CountState.OK))
    text = get(m, "/metrics")[1].decode()
    for line in ('streamcount_region_density{camera="gate",region="plaza"} 2.5',
                 'streamcount_region_area_square_metres{camera="gate",region="plaza"} 10.0',
                 'streamcount_region_los{camera="gate",los="F",region="plaza"} 1.0',
                 'streamcount_region_los{camera="gate",los="E",region="plaza"} 0.0'):
        assert line in text, line
    assert 'streamcount_region_density{camera="gate",region="queue"}' not in text
    regions = json.loads(get(m, "/api/state")[1])["cameras"]["gate"]["regions"]
    assert (regions["plaza"]["density"], regions["plaza"]["los"]) == (2.5, "F")
    assert "density" not in regions["queue"]
