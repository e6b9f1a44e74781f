"""Offline inputs: real decoding of vtest.avi and ffmpeg-made clips, images, folders, errors."""

from __future__ import annotations

import logging
import shutil
import subprocess
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcount.errors import InputError
from streamcount.sources.media import MediaKind, is_stream_url, list_images, open_media

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    d = tmp_path_factory.mktemp("clips")
    out = {"h264": d / "test.mp4", "ts": d / "offset.ts", "audio": d / "tone.wav"}
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "1.2", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", "-g", "10", str(out["h264"]))
    # MPEG-TS starts at 1.4 s of stream time: pts_s must still start at 0
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "1", "-c:v", "mpeg2video",
            str(out["ts"]))
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", str(out["audio"]))
    return out


def test_vtest_frames_are_bgr_with_media_time(vtest_avi: Path) -> None:
    with open_media(vtest_avi) as src:
        assert src.info.kind is MediaKind.VIDEO
        assert (src.info.width, src.info.height, src.info.fps) == (768, 576, 10.0)
        assert src.info.frames == 795 and src.info.name == "vtest.avi"
        frames = list(islice(src, 3))
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.pts_s for f in frames] == pytest.approx([0.0, 0.1, 0.2])
    assert all(f.camera == "vtest.avi" and f.file is None for f in frames)
    assert frames[0].image.shape == (576, 768, 3) and frames[0].image.dtype == np.uint8
    cap = cv2.VideoCapture(str(vtest_avi))
    ok, ref = cap.read()
    cap.release()
    assert ok
    # same picture as OpenCV's own decoder, channels in BGR order
    diff = np.abs(frames[0].image.astype(np.int16) - ref.astype(np.int16)).mean(axis=(0, 1))
    swapped = np.abs(frames[0].image[..., ::-1].astype(np.int16) - ref.astype(np.int16)).mean(axis=(0, 1))
    assert diff.max() < 3.0
    assert swapped.sum() > diff.sum()


def test_vtest_is_read_losslessly(vtest_avi: Path) -> None:
    small = []
    with open_media(vtest_avi, queue_size=2,
                    transform=lambda im: cv2.resize(im, (96, 72), interpolation=cv2.INTER_AREA)) as src:
        for f in src:
            small.append(f.index)
            assert f.image.shape == (72, 96, 3)
    assert small == list(range(795))
    assert src.decoded == 795 and src.dropped == 0


def test_fps_sampling_by_media_time(vtest_avi: Path) -> None:
    with open_media(vtest_avi, fps=2) as src:
        frames = list(islice(src, 6))
        assert src.expected_frames == 159
    assert [f.index for f in frames] == [0, 5, 10, 15, 20, 25]
    assert [f.pts_s for f in frames] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5])


def test_fps_above_source_rate_keeps_every_frame(clips: dict[str, Path]) -> None:
    with open_media(clips["h264"], fps=100) as src:
        idx = [f.index for f in src]
    assert idx == list(range(30))


def test_h264_clip_and_stream_offset(clips: dict[str, Path]) -> None:
    with open_media(clips["h264"]) as src:
        frames = list(src)
    assert len(frames) == 30 and frames[-1].pts_s == pytest.approx(29 / 25)
    assert frames[0].image.shape == (240, 320, 3)
    with open_media(clips["ts"]) as src:
        ts = list(src)
    assert ts[0].pts_s == pytest.approx(0.0, abs=1e-6)
    assert ts[-1].pts_s == pytest.approx(0.9, abs=0.02)


def test_early_close_stops_the_reader(vtest_avi: Path) -> None:
    src = open_media(vtest_avi, queue_size=2)
    it = iter(src)
    next(it)
    src.close()
    assert src._thread is not None and not src._thread.is_alive()


def test_single_image_and_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["img1.png", "img2.png", "img10.png"]
    with open_media(tmp_path) as src:
        assert src.info.kind is MediaKind.FOLDER and src.info.frames == 3
        frames = list(src)
    assert [(f.index, f.pts_s, f.file) for f in frames] == [
        (0, 0.0, "img1.png"), (1, 1.0, "img2.png"), (2, 2.0, "img10.png")]
    np.testing.assert_array_equal(frames[2].image, cv2.imread(str(tmp_path / "img10.png")))
    with open_media(tmp_path / "img2.png") as src:
        assert src.info.kind is MediaKind.IMAGE
        (one,) = list(src)
    assert one.file == "img2.png" and one.image.shape == (48, 64, 3)


def test_folder_sampling_treats_images_as_one_per_second(tmp_path: Path) -> None:
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.full((16, 16, 3), i * 40, np.uint8))
    with open_media(tmp_path, fps=0.5) as src:
        assert [f.file for f in src] == ["0.jpg", "2.jpg", "4.jpg"]


@pytest.mark.parametrize("make", ["missing", "empty_folder", "no_images", "bad_suffix",
                                  "corrupt_image", "garbage_video", "header_only"])
def test_bad_inputs_raise_input_error_naming_the_path(tmp_path: Path, vtest_avi: Path,
                                                      make: str) -> None:
    target = {
        "missing": tmp_path / "nope.mp4",
        "empty_folder": tmp_path / "empty",
        "no_images": tmp_path / "docs",
        "bad_suffix": tmp_path / "pic.gif",
        "corrupt_image": tmp_path / "broken.jpg",
        "garbage_video": tmp_path / "garbage.mp4",
        "header_only": tmp_path / "cut.avi",
    }[make]
    rng = np.random.default_rng(0)
    if make == "empty_folder":
        target.mkdir()
    elif make == "no_images":
        target.mkdir()
        (target / "a.txt").write_text("x")
    elif make == "bad_suffix":
        target.write_bytes(b"GIF89a")
    elif make == "corrupt_image":
        target.write_bytes(b"\xff\xd8\xff" + rng.bytes(500))
    elif make == "garbage_video":
        target.write_bytes(rng.bytes(100_000))
    elif make == "header_only":
        target.write_bytes(vtest_avi.read_bytes()[:3000])
    with pytest.raises(InputError) as e:
        with open_media(target) as src:
            list(src)
    assert str(target) in str(e.value)
    assert "\n" not in str(e.value)


def test_truncated_video_yields_the_decodable_frames(tmp_path: Path, vtest_avi: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    cut = tmp_path / "cut.avi"
    cut.write_bytes(vtest_avi.read_bytes()[:300_000])
    with caplog.at_level(logging.WARNING), open_media(cut) as src:
        n = sum(1 for _ in src)
    assert 0 < n < 795
    assert "truncated" in caplog.text


def test_audio_only_file_has_no_video(clips: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="no video stream"):
        open_media(clips["audio"])


def test_stream_url_errors_never_show_credentials() -> None:
    url = "rtsp://admin:s3cret@127.0.0.1:9/live"
    assert is_stream_url(url) and not is_stream_url("/videos/rtsp.mp4")
    with pytest.raises(InputError) as e:
        open_media(url)
    msg = str(e.value)
    assert "s3cret" not in msg and "admin" not in msg
    assert "rtsp://***@127.0.0.1:9/live" in msg


def test_bad_sampling_rate() -> None:
    with pytest.raises(InputError, match="fps must be positive"):
        open_media("whatever.mp4", fps=0)
