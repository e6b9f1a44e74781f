"""Stream health: black, uniform and frozen frames from real decoded clips; offline, stalled."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from streamcount.sources.health import RateMeter, StreamHealth, thumbnail

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not found on PATH")


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True,
                   timeout=120)


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, vtest_avi: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("health")
    out = {"black": d / "black.mp4", "grey": d / "grey.mp4", "frozen": d / "frozen.mp4",
           "moving": d / "moving.mp4"}
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-bf", "0"]
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=320x240:r=5", "-t", "2", *enc,
            str(out["black"]))
    _ffmpeg("-f", "lavfi", "-i", "color=c=0x808080:s=320x240:r=5", "-t", "2", *enc,
            str(out["grey"]))
    # one real CCTV frame repeated: a camera whose encoder froze
    _ffmpeg("-ss", "5", "-i", str(vtest_avi), "-frames:v", "1", "-vf", "scale=320:-2",
            str(d / "still.png"))
    _ffmpeg("-loop", "1", "-i", str(d / "still.png"), "-r", "5", "-t", "4", *enc,
            str(out["frozen"]))
    _ffmpeg("-i", str(vtest_avi), "-t", "4", "-vf", "scale=320:-2,fps=5", *enc,
            str(out["moving"]))
    return out


def _run(health: StreamHealth, frames: list[np.ndarray], fps: float) -> list[str | None]:
    health.set_source("streaming")
    return [health.check_frame(f, i / fps) for i, f in enumerate(frames)]


def test_black_clip_is_unhealthy(clips: dict[str, Path]) -> None:
    h = StreamHealth(black_level=8, uniform_std=3, frozen_s=10)
    reasons = _run(h, _frames(clips["black"]), 5)
    assert reasons and all(r == "black frame" for r in reasons)
    assert not h.is_healthy and h.reason == "black frame"


def test_uniform_grey_clip_is_unhealthy(clips: dict[str, Path]) -> None:
    h = StreamHealth(black_level=8, uniform_std=3, frozen_s=10)
    reasons = _run(h, _frames(clips["grey"]), 5)
    assert all(r == "uniform frame" for r in reasons)


def test_frozen_clip_becomes_unhealthy_after_frozen_s(clips: dict[str, Path]) -> None:
    h = StreamHealth(frozen_s=2.0)
    frames = _frames(clips["frozen"])
    reasons = _run(h, frames, 5)
    # healthy until the picture has been unchanged for 2 s of media time, frozen after
    assert reasons[0] is None and reasons[int(1.5 * 5)] is None
    assert reasons[-1] is not None and reasons[-1].startswith("frozen video")
    assert all(r is not None for r in reasons[2 * 5 + 1:])


def test_real_moving_video_stays_healthy(clips: dict[str, Path]) -> None:
    h = StreamHealth(frozen_s=1.0)
    reasons = _run(h, _frames(clips["moving"]), 5)
    assert reasons and all(r is None for r in reasons)
    assert h.is_healthy


def test_frozen_run_resets_when_the_picture_changes(clips: dict[str, Path]) -> None:
    frozen = _frames(clips["frozen"])
    moving = _frames(clips["moving"])
    h = StreamHealth(frozen_s=1.0)
    h.set_source("streaming")
    for i, f in enumerate(frozen[:10]):
        h.check_frame(f, i * 0.2)
    assert h.reason is not None and h.reason.startswith("frozen")
    assert h.check_frame(moving[0], 2.2) is None
    assert h.is_healthy


def test_offline_and_stalled_states() -> None:
    h = StreamHealth(stall_s=5)
    assert h.reason == "offline (connecting)"  # nothing received yet
    h.set_source("reconnecting", "stream ended")
    assert h.reason == "offline (reconnecting: stream ended)" and not h.is_healthy
    h.set_source("streaming")
    assert h.is_healthy
    assert h.check_stall(1.0) is False and h.is_healthy
    assert h.check_stall(6.0) is True
    assert h.reason is not None and h.reason.startswith("stalled")
    assert h.check_stall(0.1) is False and h.is_healthy


def test_thumbnail_is_small_and_grey() -> None:
    img = np.zeros((1080, 1920, 3), np.uint8)
    img[:, :960] = 255
    t = thumbnail(img)
    assert t.shape == (36, 64) and t.dtype == np.float32
    assert t[:, :31].min() == 255 and t[:, 33:].max() == 0


def test_rate_meter() -> None:
    m = RateMeter(window_s=2.0)
    assert m.rate(0.0) == 0.0
    for i in range(21):
        m.tick(i * 0.1)
    assert m.rate(2.0) == pytest.approx(10.0, rel=0.05)
    assert m.rate(10.0) == 0.0  # idle for longer than the window
