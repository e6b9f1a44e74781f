"""Simulated cameras: real H.264 clips decoded in real time into latest-frame slots."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from streamcount.bench.streams import (ClipStream, DecodeMode, clip_info, ensure_clip,
                                       probe_decoder, start_delays, to_bgr)
from streamcount.errors import InputError
from streamcount.sources.slots import LatestSlot


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return ensure_clip((120, 160), seconds=1, fps=20, directory=tmp_path_factory.mktemp("clip"))


def test_generated_clip_is_h264_and_cached(clip: Path) -> None:
    assert clip_info(clip) == (120, 160, 20.0)
    with av.open(str(clip)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 20
    mtime = clip.stat().st_mtime_ns
    assert ensure_clip((120, 160), seconds=1, fps=20, directory=clip.parent) == clip
    assert clip.stat().st_mtime_ns == mtime


def test_to_bgr_matches_swscale(clip: Path) -> None:
    with av.open(str(clip)) as c:
        vf = next(c.decode(video=0))
        ours, ref = to_bgr(vf), vf.to_ndarray(format="bgr24")
    assert ours.shape == (120, 160, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - ref.astype(int)).mean() < 3


def test_decoder_probe_reports_what_it_uses(clip: Path) -> None:
    assert probe_decoder(clip, "none") == DecodeMode("software", "hardware decoding not requested")
    mode = probe_decoder(clip, "auto")
    assert mode.name in ("cuda", "software") and mode.note
    if mode.name == "software":
        assert "NVDEC" in mode.note or "hwaccel" in mode.note


def test_clip_info_of_a_non_video(tmp_path: Path) -> None:
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match="not a readable video"):
        clip_info(bad)


def test_stream_paces_loops_and_emits_at_its_rate(clip: Path) -> None:
    """A 1 s clip at 20 fps, emitting 5 fps, run ~1.6 s: loops once, real-time, ~5 frames/s."""
    stop = threading.Event()
    slot = LatestSlot(capacity=64)
    st = ClipStream("cam0", clip, slot, emit_fps=5, decode=DecodeMode("software"), stop=stop)
    t0 = time.monotonic()
    st.start()
    stop.wait(1.6)
    stop.set()
    st.join(5)
    elapsed = time.monotonic() - t0
    assert st.error is None
    assert 20 < st.decoded <= 20 * elapsed + 2  # looped, but never faster than real time
    frames = []
    while (f := slot.take()) is not None:
        frames.append(f)
        slot_frames = frames
    assert 6 <= st.emitted <= 10  # 5/s over ~1.6 s
    assert slot_frames[0].image.shape == (120, 160, 3)
    assert slot.put_count == st.emitted


def test_start_delays_spread_within_a_period() -> None:
    d = start_delays(50, 0.2, seed=1)
    assert len(d) == 50 and all(0 <= x <= 0.2 for x in d) and len(set(d)) == 50
