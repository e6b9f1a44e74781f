"""The live service end to end on real clips (ffmpeg-made), a real model file and the real
config loader: counts, CSV, JSONL, HTTP metrics/health/state, stream-health gating (black and
frozen clips), reload (in-process and SIGHUP on ``streamcount run``), clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamcount.cli.main import main as cli_main
from streamcount.config.loader import load_config
from streamcount.config.schema import ServiceConfig
from streamcount.messages import AlertEvent, CountState, CountUpdate, StatusEvent
from streamcount.pipeline.service import Service
from tests.integration.rtsp_server import free_port

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True,
                   timeout=120)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, vtest_avi: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-bf", "0",
           "-g", "10"]
    out = {"cctv": d / "cctv.mp4", "black": d / "black.mp4", "frozen": d / "frozen.mp4"}
    _ffmpeg("-i", str(vtest_avi), "-t", "6", "-vf", "scale=256:-2", *enc, str(out["cctv"]))
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=256x192:r=10", "-t", "3", *enc,
            str(out["black"]))
    _ffmpeg("-ss", "5", "-i", str(vtest_avi), "-frames:v", "1", "-vf", "scale=256:-2",
            str(d / "still.png"))
    _ffmpeg("-loop", "1", "-i", str(d / "still.png"), "-r", "10", "-t", "3", *enc,
            str(out["frozen"]))
    return out


class Collect:
    """An in-memory event sink (a real Sink on the service's bus)."""

    name = "collect"

    def __init__(self) -> None:
        self.events: list[object] = []
        self._cond = threading.Condition()

    def handle(self, event: object) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def close(self) -> None:
        pass

    def of(self, kind: type, camera: str | None = None) -> list[Any]:
        with self._cond:
            return [e for e in self.events if isinstance(e, kind)
                    and (camera is None or getattr(e, "camera", None) == camera)]

    def wait(self, pred: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
            return True


def camera_yaml(name: str, source: Path | str, *, fps: float = 4, loop: bool = True,
                extra: str = "", alerts: str = "") -> str:
    text = (f"  - name: {name}\n    source: {source}\n    fps: {fps}\n"
            f"    loop: {'true' if loop else 'false'}\n")
    text += extra
    text += ("    regions:\n      - name: left\n"
             "        polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n")
    if alerts:
        text += f"        alerts: {alerts}\n"
    return text


def write_config(path: Path, model: Path, cameras: str, *, http_port: int | None = 0,
                 head: str = "") -> Path:
    http = "http: {enabled: false}\n" if http_port is None else f"http: {{port: {http_port}}}\n"
    path.write_text(
        f"{http}"
        f"inference: {{model: {model}, backend: torch, max_side: 160, threads: 1}}\n"
        f"smoothing: {{method: none}}\n"
        f"{head}"
        f"cameras:\n{cameras}")
    return path


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def running() -> Iterator[Callable[..., tuple[Service, Collect]]]:
    services: list[Service] = []

    def start(cfg: ServiceConfig, path: Path | None = None) -> tuple[Service, Collect]:
        sink = Collect()
        svc = Service(cfg, path, extra_sinks=(sink,))
        services.append(svc)
        svc.start()
        return svc, sink

    yield start
    for s in services:
        s.stop()


def ok_counts(sink: Collect, camera: str, region: str = "left") -> list[CountUpdate]:
    return [u for u in sink.of(CountUpdate, camera)
            if u.region == region and u.state is CountState.OK]


def test_file_camera_end_to_end(tmp_path: Path, model_file: Path, clips: dict[str, Path],
                                running: Callable[..., tuple[Service, Collect]]) -> None:
    cfg_path = write_config(
        tmp_path / "svc.yaml", model_file,
        camera_yaml("cam", clips["cctv"], extra="    csv: true\n"),
        head=f"sinks: {{jsonl: {tmp_path / 'events.jsonl'}, csv_dir: {tmp_path / 'csv'}}}\n")
    svc, sink = running(load_config(cfg_path), cfg_path)
    assert sink.wait(lambda: len(ok_counts(sink, "cam")) >= 4), sink.events[-5:]
    port = svc.http_port
    assert port
    code, body = get(f"http://127.0.0.1:{port}/healthz")
    assert code == 200
    health = json.loads(body)
    assert health["status"] == "ok" and health["cameras"]["cam"]["state"] == "streaming"
    code, body = get(f"http://127.0.0.1:{port}/metrics")
    text = body.decode()
    assert code == 200
    for needle in ('streamcount_camera_decoded_frames_total{camera="cam"}',
                   'streamcount_camera_state{camera="cam",state="streaming"} 1.0',
                   'streamcount_inference_seconds_bucket', 'streamcount_inference_batch_size',
                   'streamcount_region_count{camera="cam",region="left"}',
                   'streamcount_camera_dropped_frames_total{camera="cam"}'):
        assert needle in text, needle
    code, body = get(f"http://127.0.0.1:{port}/api/state")
    state = json.loads(body)
    cam = state["cameras"]["cam"]
    assert code == 200 and state["running"] is True
    assert cam["processed"] >= 4 and cam["decoded"] >= cam["processed"]
    assert cam["regions"]["left"]["state"] == "ok" and "all" in cam["regions"]
    assert state["inference"]["frames"] >= 4
    assert get(f"http://127.0.0.1:{port}/nope")[0] == 404

    svc.stop()
    statuses = [e.state for e in sink.of(StatusEvent, "cam")]
    assert statuses == ["connecting", "streaming", "stopped"]
    last = sink.of(CountUpdate, "cam")[-1]
    assert last.state is CountState.UNKNOWN and "stopp" in (last.reason or "")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    # CSV: counts.csv columns, one row per processed frame and region
    rows = (tmp_path / "csv" / "cam.csv").read_text().splitlines()
    assert rows[0] == "frame,time_s,region,count"
    regions = [r.split(",")[2] for r in rows[1:]]
    assert regions[:2] == ["left", "all"] and len(rows) - 1 >= 2 * cam["processed"]
    times = [float(r.split(",")[1]) for r in rows[1::2]]
    # media-time sampling: the first frame of each 1/4 s interval of a 10 fps file
    assert times[:4] == [0.0, 0.3, 0.5, 0.8]
    # JSONL: every event as JSON lines
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {x["type"] for x in lines} >= {"StatusEvent", "CountUpdate"}


def test_black_and_frozen_clips_count_as_unknown(
        tmp_path: Path, model_file: Path, clips: dict[str, Path],
        running: Callable[..., tuple[Service, Collect]]) -> None:
    # a rule above -1 fires on any real count: if black or frozen frames were counted, it would
    always = "[{level: warning, above: -1}]"
    cams = (camera_yaml("black", clips["black"], alerts=always)
            + camera_yaml("frozen", clips["frozen"], alerts=always,
                          extra="    health: {frozen_s: 1.0}\n"))
    cfg_path = write_config(tmp_path / "svc.yaml", model_file, cams, http_port=None)
    svc, sink = running(load_config(cfg_path), cfg_path)

    def frozen_unknown() -> bool:
        return any(u.state is CountState.UNKNOWN and (u.reason or "").startswith("frozen video")
                   for u in sink.of(CountUpdate, "frozen"))

    def black_unknown() -> bool:
        return sum(u.reason == "black frame" for u in sink.of(CountUpdate, "black")) >= 3

    assert sink.wait(lambda: frozen_unknown() and black_unknown(), timeout=60)
    svc.stop()
    black = sink.of(CountUpdate, "black")
    assert black and all(u.state is CountState.UNKNOWN and u.count is None for u in black)
    assert not [e for e in sink.of(AlertEvent, "black") if e.level == "warning"]
    frozen = [u for u in sink.of(CountUpdate, "frozen") if u.region == "left"]
    first_frozen = next(i for i, u in enumerate(frozen)
                        if (u.reason or "").startswith("frozen"))
    # counted while the picture could still be live, unknown once frozen for frozen_s
    assert any(u.state is CountState.OK for u in frozen[:first_frozen])
    after = frozen[first_frozen:]
    assert all(u.state is CountState.UNKNOWN for u in after)
    levels = [e.level for e in sink.of(AlertEvent, "frozen")]
    assert levels[:2] == ["warning", "unknown"]  # the alert never stays on a frozen picture
    snap_black = [e for e in sink.of(StatusEvent, "black")]
    assert snap_black[1].state == "streaming"  # healthy transport, unhealthy picture


def test_reload_changes_only_what_changed(tmp_path: Path, model_file: Path,
                                          clips: dict[str, Path],
                                          running: Callable[..., tuple[Service, Collect]]
                                          ) -> None:
    a, b, c = (camera_yaml(n, clips["cctv"]) for n in ("a", "b", "c"))
    p1 = write_config(tmp_path / "one.yaml", model_file, a + b, http_port=None)
    svc, sink = running(load_config(p1), p1)
    assert sink.wait(lambda: ok_counts(sink, "a") and ok_counts(sink, "b"))
    reader_a = svc.reader("a")
    events_a = len(sink.of(StatusEvent, "a"))

    # b removed, c added, a untouched
    p2 = write_config(tmp_path / "two.yaml", model_file, a + c, http_port=None)
    result = svc.reload(load_config(p2))
    assert (result.added, result.removed, result.unchanged) == (("c",), ("b",), ("a",))
    assert sink.wait(lambda: ok_counts(sink, "c"))
    assert [e.state for e in sink.of(StatusEvent, "b")][-1] == "stopped"
    assert sink.of(StatusEvent, "b")[-1].reason == "removed from config"
    assert svc.camera_names() == ["a", "c"]
    assert svc.reader("a") is reader_a and reader_a.alive
    assert len(sink.of(StatusEvent, "a")) == events_a  # no status change for a

    # a's alert rule changes: new pipeline, same reader; a's source changes: restarted
    a_rule = camera_yaml("a", clips["cctv"], alerts="[{level: warning, above: 1.0e9}]")
    p3 = write_config(tmp_path / "three.yaml", model_file, a_rule + c, http_port=None)
    result = svc.reload(load_config(p3))
    assert result.reconfigured == ("a",) and result.unchanged == ("c",)
    assert svc.reader("a") is reader_a
    n = len(ok_counts(sink, "a"))
    assert sink.wait(lambda: len(ok_counts(sink, "a")) > n)

    a_src = camera_yaml("a", clips["black"])
    p4 = write_config(tmp_path / "four.yaml", model_file, a_src + c, http_port=None)
    cfg4 = load_config(p4)
    cfg4 = cfg4.model_copy(update={"inference": cfg4.inference.model_copy(
        update={"max_batch": 2})})
    result = svc.reload(cfg4)
    assert result.restarted == ("a",) and result.needs_restart == ("inference",)
    assert svc.reader("a") is not reader_a and not reader_a.alive
    assert svc.config.inference.max_batch != 2  # not applied: needs a restart


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["STREAMCOUNT_HOME"] = str(tmp_path / "home")
    return env


@pytest.mark.slow
def test_sighup_reload_and_sigterm(tmp_path: Path, model_file: Path, clips: dict[str, Path],
                                   cli_env: dict[str, str]) -> None:
    port = free_port()
    cfg = tmp_path / "svc.yaml"
    jsonl = f"sinks: {{jsonl: {tmp_path / 'events.jsonl'}}}\n"
    write_config(cfg, model_file, camera_yaml("a", clips["cctv"]), http_port=port, head=jsonl)
    proc = subprocess.Popen([sys.executable, "-m", "streamcount", "-v", "run", str(cfg)],
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)

    def state() -> dict[str, Any] | None:
        try:
            return json.loads(get(f"http://127.0.0.1:{port}/api/state")[1])
        except OSError:
            return None

    def wait_state(pred: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            s = state()
            if s is not None and pred(s):
                return s
            time.sleep(0.25)
        raise AssertionError(f"state not reached: {state()}")

    try:
        s1 = wait_state(lambda s: s["cameras"].get("a", {}).get("processed", 0) >= 2)
        started_a = s1["cameras"]["a"]["started_at"]
        write_config(cfg, model_file, camera_yaml("a", clips["cctv"])
                     + camera_yaml("b", clips["cctv"]), http_port=port, head=jsonl)
        proc.send_signal(signal.SIGHUP)
        s2 = wait_state(lambda s: s["cameras"].get("b", {}).get("processed", 0) >= 2)
        assert s2["cameras"]["a"]["started_at"] == started_a  # a was not restarted
        assert s2["cameras"]["a"]["reconnects"] == 0 and s2["reloads"] == 1
        assert s2["cameras"]["a"]["decoded"] > s1["cameras"]["a"]["decoded"]

        cfg.write_text(cfg.read_text().replace("fps: 4", "fps: -4", 1))  # invalid
        proc.send_signal(signal.SIGHUP)
        time.sleep(2.0)
        s3 = wait_state(lambda s: True)
        assert set(s3["cameras"]) == {"a", "b"} and s3["reloads"] == 1  # old config kept
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "config reload failed; keeping the running config" in err
    assert "cameras[0].fps" in err
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    stopped = {e["camera"] for e in events
               if e["type"] == "StatusEvent" and e["state"] == "stopped"}
    assert stopped == {"a", "b"}


def test_run_with_a_bad_config_exits_2(tmp_path: Path, model_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "bad.yaml", model_file,
                       camera_yaml("a", tmp_path / "missing.mp4"))
    assert cli_main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}:" in err and "cameras[0].source" in err and "file not found" in err
