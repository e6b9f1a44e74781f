"""CameraReader on real sources: files (loop, end, sampling, pacing), HTTP MJPEG, dead and
live RTSP (gst-rtsp-server), state machine and credential redaction."""

from __future__ import annotations

import functools
import http.server
import logging
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamcount.messages import Frame, StatusEvent
from streamcount.sources.backoff import Backoff
from streamcount.sources.reader import (TRANSITIONS, CameraReader, ReaderSettings, SourceKind,
                                        SourceState, source_kind)
from streamcount.sources.slots import FifoSlot, LatestSlot
from tests.integration.rtsp_server import (RtspServer, free_port, gst_rtsp_missing,
                                           make_h264_clip)

pytestmark = pytest.mark.timeout(120)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True,
                   timeout=120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 10 fps, 160x120 H.264."""
    p = tmp_path_factory.mktemp("reader") / "clip.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120:r=10", "-t", "2", "-c:v", "libx264",
            "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "10", "-bf", "0", str(p))
    return p


class Recorder:
    """Collects status events."""

    def __init__(self) -> None:
        self.events: list[StatusEvent] = []
        self._cond = threading.Condition()

    def __call__(self, ev: StatusEvent) -> None:
        with self._cond:
            self.events.append(ev)
            self._cond.notify_all()

    @property
    def states(self) -> list[str]:
        with self._cond:
            return [e.state for e in self.events]

    def wait(self, pred: Callable[[list[str]], bool], timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pred([e.state for e in self.events]), timeout)

    def wait_count(self, state: str, n: int, timeout: float = 30.0) -> bool:
        return self.wait(lambda s: s.count(state) >= n, timeout)


def drain(slot: FifoSlot | LatestSlot, n: int, timeout: float = 30.0) -> list[Frame]:
    out: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        f = slot.take()
        if f is None:
            time.sleep(0.005)
        else:
            out.append(f)
    return out


@pytest.mark.parametrize("initial, cap, expected", [
    (1.0, 8.0, [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]),
    (0.5, 30.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]),
    (2.0, 3.0, [2.0, 3.0, 3.0, 3.0, 3.0, 3.0]),
])
def test_backoff_doubles_up_to_the_cap(initial: float, cap: float,
                                       expected: list[float]) -> None:
    b = Backoff(initial, cap, jitter=0.0)
    assert [b.next_delay() for _ in expected] == expected
    b.reset()
    assert b.next_delay() == initial


def test_backoff_jitter_stays_within_bounds() -> None:
    b = Backoff(1.0, 4.0, jitter=0.5, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(200)]
    bases = [min(4.0, 2.0 ** min(i, 2)) for i in range(200)]
    assert all(0.5 * base <= d <= base for d, base in zip(delays, bases))
    assert len({round(d, 6) for d in delays[5:]}) > 50  # spread, not lock-step
    with pytest.raises(ValueError):
        Backoff(1.0, 2.0, jitter=1.5)


def test_source_kinds() -> None:
    assert source_kind("rtsp://h/x") is SourceKind.RTSP
    assert source_kind("RTSPS://h/x") is SourceKind.RTSP
    assert source_kind("http://h/x.mjpg") is SourceKind.STREAM
    assert source_kind("https://h/live.m3u8") is SourceKind.STREAM
    assert source_kind("/dev/video0") is SourceKind.DEVICE
    assert source_kind("/data/clip.mp4") is SourceKind.FILE
    assert not SourceKind.FILE.live and SourceKind.RTSP.live


def test_transition_table() -> None:
    assert SourceState.STREAMING in TRANSITIONS[SourceState.CONNECTING]
    assert SourceState.STREAMING in TRANSITIONS[SourceState.RECONNECTING]
    assert not TRANSITIONS[SourceState.STOPPED] and not TRANSITIONS[SourceState.FAILED]
    assert SourceState.CONNECTING not in TRANSITIONS[SourceState.STREAMING]


def test_file_ends_losslessly_then_stops(clip: Path) -> None:
    rec = Recorder()
    slot = FifoSlot(2)
    r = CameraReader(ReaderSettings("cam", str(clip), realtime=False), slot, rec)
    r.start()
    frames = drain(slot, 20)
    r.join(10)
    assert [f.index for f in frames] == list(range(20))  # every frame, in order
    assert frames[0].image.shape == (120, 160, 3)
    assert frames[-1].pts_s == pytest.approx(1.9, abs=1e-3)
    assert slot.dropped == 0 and r.decoded == 20
    assert rec.states == ["connecting", "streaming", "stopped"]
    assert rec.events[-1].reason == "end of file"
    assert rec.events[1].fps == pytest.approx(10.0)
    assert r.state is SourceState.STOPPED and not r.alive


def test_looped_file_keeps_media_time_increasing(clip: Path) -> None:
    rec = Recorder()
    slot = FifoSlot(4)
    r = CameraReader(ReaderSettings("cam", str(clip), loop=True, realtime=False), slot, rec)
    r.start()
    frames = drain(slot, 45)
    r.stop()
    pts = [f.pts_s for f in frames]
    assert len(frames) == 45
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[44] == pytest.approx(4.4, abs=1e-3)  # two loops later, no gap, no repeat
    assert r.loops >= 2 and r.reconnects == 0
    assert rec.states == ["connecting", "streaming", "stopped"]  # a loop is not a reconnect


def test_file_emit_fps_samples_by_media_time(clip: Path) -> None:
    slot = FifoSlot(4)
    r = CameraReader(ReaderSettings("cam", str(clip), realtime=False, emit_fps=2.0), slot)
    r.start()
    r.join(10)
    frames = drain(slot, 10, timeout=2)
    assert [round(f.pts_s, 3) for f in frames] == [0.0, 0.5, 1.0, 1.5]
    assert r.decoded == 20 and r.emitted == 4


def test_realtime_file_is_paced(clip: Path) -> None:
    slot = FifoSlot(32)
    r = CameraReader(ReaderSettings("cam", str(clip), realtime=True), slot)
    t0 = time.monotonic()
    r.start()
    r.join(30)
    # paced to media time: 20 frames at 10 fps cannot arrive faster than ~1.9 s
    assert time.monotonic() - t0 >= 1.5
    assert len(slot) == 20


def test_missing_file_fails(tmp_path: Path) -> None:
    rec = Recorder()
    r = CameraReader(ReaderSettings("cam", str(tmp_path / "nope.mp4")), LatestSlot(1), rec)
    r.start()
    r.join(10)
    assert rec.states == ["connecting", "failed"]
    assert "file not found" in (rec.events[-1].reason or "")


def test_not_a_video_fails(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 100)
    rec = Recorder()
    r = CameraReader(ReaderSettings("cam", str(bad)), LatestSlot(1), rec)
    r.start()
    r.join(10)
    assert rec.states[-1] == "failed"


def test_dead_rtsp_reconnects_with_redacted_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/cam"
    rec = Recorder()
    r = CameraReader(ReaderSettings("cam", url, stall_s=2, reconnect_initial_s=0.05,
                                    reconnect_max_s=0.2, reconnect_jitter=0.0),
                     LatestSlot(1), rec)
    r.start()
    deadline = time.monotonic() + 20
    while r.reconnect_attempts < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    r.stop()
    assert r.reconnect_attempts >= 3
    assert rec.states == ["connecting", "reconnecting", "stopped"]  # retries are quiet
    reason = rec.events[1].reason or ""
    assert reason.startswith("cannot open")
    text = caplog.text + " ".join(str(e) for e in rec.events) + str(r.stats())
    assert "hunter2" not in text and "admin" not in text
    assert r.settings.shown_url == f"rtsp://***@127.0.0.1:{port}/cam"


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {".mjpeg": "multipart/x-mixed-replace;boundary=ffmpeg"}

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mjpeg_server(tmp_path: Path, clip: Path) -> Iterator[str]:
    _ffmpeg("-i", str(clip), "-t", "1", "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg",
            str(tmp_path / "cam.mjpeg"))
    handler = functools.partial(_Handler, directory=str(tmp_path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/cam.mjpeg"
    srv.shutdown()
    srv.server_close()


def test_http_mjpeg_end_is_a_disconnect(mjpeg_server: str) -> None:
    rec = Recorder()
    slot = LatestSlot(1)
    r = CameraReader(ReaderSettings("cam", mjpeg_server, stall_s=5, reconnect_initial_s=0.1,
                                    reconnect_max_s=0.2), slot, rec)
    r.start()
    # the served stream ends after 10 frames: a live source reconnects instead of stopping
    assert rec.wait_count("streaming", 2, timeout=30), rec.states
    r.stop()
    assert rec.states[:4] == ["connecting", "streaming", "reconnecting", "streaming"]
    # mpjpeg ends with a truncated part: an error or a clean end, both a disconnect
    assert (rec.events[2].reason or "").startswith(("stream ended", "stream error"))
    assert r.reconnects >= 1 and r.decoded > 10  # the whole first pass, then more
    assert slot.dropped > 0  # latest-frame-wins: nobody consumed


@pytest.fixture(scope="module")
def rtsp_clip(tmp_path_factory: pytest.TempPathFactory, vtest_avi: Path) -> Path:
    reason = gst_rtsp_missing()
    if reason:
        pytest.skip(reason)
    return make_h264_clip(vtest_avi, tmp_path_factory.mktemp("rtsp") / "clip.mp4",
                          seconds=30, width=256)


@pytest.mark.integration
def test_rtsp_server_killed_and_restarted(rtsp_clip: Path) -> None:
    with RtspServer(rtsp_clip) as srv:
        rec = Recorder()
        slot = LatestSlot(1)
        r = CameraReader(ReaderSettings("cam", srv.url, stall_s=5, reconnect_initial_s=0.2,
                                        reconnect_max_s=1.0), slot, rec)
        r.start()
        try:
            assert rec.wait_count("streaming", 1), rec.states
            decoded = r.decoded
            srv.kill()
            assert rec.wait_count("reconnecting", 1), rec.states
            assert rec.events[-1].reason == "stream ended"  # the clean EOF of a killed server
            srv.start()
            assert rec.wait_count("streaming", 2, timeout=40), rec.states
            f = drain(slot, 1)
            assert f and f[0].image.shape == (192, 256, 3)
        finally:
            r.stop()
        assert r.reconnects == 1 and r.decoded > decoded
        assert rec.states == ["connecting", "streaming", "reconnecting", "streaming", "stopped"]


@pytest.mark.integration
def test_rtsp_hung_server_is_a_stall(rtsp_clip: Path) -> None:
    with RtspServer(rtsp_clip) as srv:
        rec = Recorder()
        r = CameraReader(ReaderSettings("cam", srv.url, stall_s=1.5, reconnect_initial_s=0.2,
                                        reconnect_max_s=0.5), LatestSlot(1), rec)
        r.start()
        try:
            assert rec.wait_count("streaming", 1), rec.states
            srv.hang()
            assert rec.wait_count("reconnecting", 1), rec.states
            assert (rec.events[-1].reason or "").startswith("stalled")
            srv.resume()
            assert rec.wait_count("streaming", 2, timeout=40), rec.states
        finally:
            r.stop(timeout=10)
