"""Alerts survive broker outages and service restarts, end to end: a looped file whose content
alternates between real CCTV (vtest.avi) and a test pattern makes a region cross its
threshold every 3 s; the threshold is chosen from the model's actual counts of the two
contents. The JSONL sink is the ground truth of every alert transition the service made; a
persistent MQTT subscriber must receive every one of them afterwards, in order, exactly once.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from streamcount.config.loader import load_config
from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.models.weights import load_model
from streamcount.regions import Region, RegionCounter
from streamcount.pipeline.service import Service
from streamcount.sources.health import StreamHealth
from tests.integration.mosquitto import Mosquitto, Subscriber, mosquitto_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PREFIX = "sc"
MAX_SIDE = 640
SEGMENT_S = 3
LEFT = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True,
                   timeout=180)


@pytest.fixture(scope="module")
def crossing_clip(tmp_path_factory: pytest.TempPathFactory, vtest_avi: Path) -> Path:
    """3 s of vtest.avi then 3 s of a people-free colour gradient, 640x480, 10 fps (looped by the
    service). (testsrc2's sharp test pattern reads as a few people to a density model.) The
    gradient's colours and seed are fixed: ffmpeg picks them at random otherwise, and two close
    colours make a frame the stream-health check calls uniform (so the region goes unknown)."""
    out = tmp_path_factory.mktemp("clips") / "crossing.mp4"
    gradient = "gradients=s=640x480:r=10:c0=0x303030:c1=0xd0d0d0:seed=1:speed=0.05"
    _ffmpeg("-i", str(vtest_avi), "-f", "lavfi", "-i", gradient,
            "-filter_complex",
            f"[0:v]scale=640:480,fps=10,trim=duration={SEGMENT_S},setpts=PTS-STARTPTS[a];"
            f"[1:v]trim=duration={SEGMENT_S},setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1[v]",
            "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-g", "10", "-bf", "0", str(out))
    return out


@pytest.fixture(scope="module")
def threshold(crossing_clip: Path, model_file: Path) -> float:
    """Midway between the region's counts of the two contents (which must not overlap); both
    contents must also pass the stream-health check (not black, uniform)."""
    net, card = load_model(model_file)
    backend = TorchBackend(net, card, threads=1)
    with av.open(str(crossing_clip)) as c:
        frames = [(f.time, f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]
    h, w = frames[0][1].shape[:2]
    size = plan_input_size(h, w, MAX_SIDE, card.input_multiple)
    counter = RegionCounter([Region("left", tuple(LEFT))], size, card.output_stride)
    health = StreamHealth(frozen_s=0)
    a, b = [], []
    for t, img in frames[::2]:
        problem = health.check_frame(img, t)
        assert problem is None, f"frame at {t:.1f} s of the clip: {problem}"
        d = backend.infer(prepare_frame(img, size)[None])[0]
        (a if t < SEGMENT_S - 0.05 else b).append(counter.count(d)["left"])
    lo, hi = sorted([(min(a), max(a)), (min(b), max(b))])
    assert lo[1] < hi[0], f"the two contents' counts overlap: {a} vs {b}"
    return (lo[1] + hi[0]) / 2


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = Mosquitto(tmp_path / "mosquitto", persistence=True).start()
    yield b
    b.stop()


def write_config(path: Path, broker: Mosquitto, model: Path, clip: Path, thr: float) -> Path:
    path.write_text(f"""
mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: {PREFIX},
        spool_dir: {path.parent / 'spool'}, client_id: streamcount-test}}
http: {{enabled: false}}
inference: {{model: {model}, backend: torch, max_side: {MAX_SIDE}, threads: 1}}
smoothing: {{method: none}}
sinks: {{jsonl: {path.parent / 'events.jsonl'}}}
cameras:
  - name: hall
    source: {clip}
    loop: true
    fps: 2
    regions:
      - name: left
        polygon: {[list(p) for p in LEFT]}
        alerts: [{{level: warning, above: {thr:.3f}}}]
""")
    return path


def truth(jsonl: Path) -> list[dict[str, Any]]:
    """Alert transitions the service made, in order (JSONL, append-only across runs)."""
    if not jsonl.exists():
        return []
    out = []
    for line in jsonl.read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "AlertEvent" and not e["renotify"]:
            out.append(e)
    return out


def received(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.messages if m.topic.endswith("/alert")]


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def crossings(events: list[dict[str, Any]]) -> int:
    return sum(e["level"] in ("warning", "normal") and e["previous"] in ("warning", "normal")
               for e in events)


def check_delivery(sub: Subscriber, jsonl: Path) -> None:
    got = received(sub)
    want = truth(jsonl)
    assert [e["id"] for e in got] == [e["id"] for e in want]  # in order, exactly once
    for g, w in zip(got, want, strict=True):
        assert (g["level"], g["previous"], g["region"]) == (w["level"], w["previous"],
                                                            w["region"])


def outage(broker: Mosquitto, sub: Subscriber, jsonl: Path) -> int:
    """A first crossing delivered, then the broker stopped across two more crossings; returns
    the crossings made before the outage."""
    wait_until(lambda: crossings(received(sub)) >= 1, 60, "a first crossing over MQTT")
    broker.stop()
    made = crossings(truth(jsonl))
    wait_until(lambda: crossings(truth(jsonl)) >= made + 2, 60,
               "two crossings while the broker is down")
    return made


def test_alerts_arrive_after_broker_outage(tmp_path: Path, broker: Mosquitto,
                                           model_file: Path, crossing_clip: Path,
                                           threshold: float) -> None:
    jsonl = tmp_path / "events.jsonl"
    cfg = write_config(tmp_path / "svc.yaml", broker, model_file, crossing_clip, threshold)
    sub = Subscriber(broker, [f"{PREFIX}/+/+/alert"], client_id="alerts-1", persistent=True)
    svc = Service(load_config(cfg), cfg)
    svc.start()
    try:
        outage(broker, sub, jsonl)
        assert svc.mqtt is not None and len(svc.mqtt.spool) >= 1
        broker.start()
        wait_until(lambda: [e["id"] for e in received(sub)]
                   == [e["id"] for e in truth(jsonl)], 90, "delivery of every alert")
    finally:
        svc.stop()
    wait_until(lambda: len(received(sub)) >= len(truth(jsonl)), 10, "the last alerts")
    sub.close()
    check_delivery(sub, jsonl)
    assert crossings(received(sub)) >= 3


def test_alerts_spooled_across_a_service_restart(tmp_path: Path, broker: Mosquitto,
                                                 model_file: Path, crossing_clip: Path,
                                                 threshold: float) -> None:
    jsonl = tmp_path / "events.jsonl"
    cfg = write_config(tmp_path / "svc.yaml", broker, model_file, crossing_clip, threshold)
    sub = Subscriber(broker, [f"{PREFIX}/+/+/alert"], client_id="alerts-2", persistent=True)
    first = Service(load_config(cfg), cfg)
    first.start()
    try:
        made = outage(broker, sub, jsonl)
    finally:
        first.stop()  # undelivered alerts stay in the on-disk spool
    spooled = len(truth(jsonl)) - len(received(sub))
    assert spooled >= 2
    broker.start()
    second = Service(load_config(cfg), cfg)
    second.start()
    try:
        wait_until(lambda: len(received(sub)) >= len(truth(jsonl))
                   and crossings(received(sub)) >= made + 3, 90,
                   "the spooled alerts and a new crossing")
    finally:
        second.stop()
    wait_until(lambda: len(received(sub)) >= len(truth(jsonl)), 10, "the last alerts")
    sub.close()
    check_delivery(sub, jsonl)
