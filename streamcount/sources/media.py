"""Offline inputs for ``streamcount count``: a video file, an image, a folder of images or a
stream URL, decoded on a reader thread into :class:`~streamcount.messages.Frame`
messages behind a bounded queue.

Files are read losslessly (the reader blocks when the queue is full); a stream URL drops the
oldest queued frame instead, so a slow consumer always gets recent frames. Sampling with
``fps`` keeps the first frame of every ``1/fps`` interval of media time and skips the colour
conversion of the others.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import av
import cv2
import numpy as np

from streamcount.config.redact import redact
from streamcount.errors import InputError
from streamcount.messages import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
_URL_RE = re.compile(rf"^({'|'.join(STREAM_SCHEMES)})://", re.IGNORECASE)
#: stream open and read timeouts, seconds
STREAM_TIMEOUT_S = (10.0, 10.0)


def is_stream_url(text: str) -> bool:
    """Whether ``text`` is a stream URL (rtsp, rtmp, http(s), udp, tcp, srt) rather than a path."""
    return bool(_URL_RE.match(text))


class MediaKind(str, Enum):
    """What an input is."""

    VIDEO = "video"
    IMAGE = "image"
    FOLDER = "folder"
    STREAM = "stream"


@dataclass(frozen=True)
class MediaInfo:
    """What is known about an input before decoding (``frames`` and ``fps`` may be unknown)."""

    input: str  # the path or the redacted URL
    name: str  # the camera name frames carry
    kind: MediaKind
    width: int | None
    height: int | None
    fps: float | None
    frames: int | None
    codec: str | None = None


class _Sampler:
    """Keeps the first frame of each ``1/fps`` interval of media time (all frames when None)."""

    def __init__(self, fps: float | None) -> None:
        if fps is not None and fps <= 0:
            raise InputError(f"--fps must be positive, got {fps}")
        self.fps = fps
        self._t0: float | None = None
        self._last = -1

    def take(self, t: float) -> bool:
        if self.fps is None:
            return True
        if self._t0 is None:
            self._t0 = t
        k = int(np.floor((t - self._t0) * self.fps + 1e-6))
        if k > self._last:
            self._last = k
            return True
        return False

    def expected(self, frames: int | None, fps: float | None) -> int | None:
        """How many frames sampling will keep out of ``frames`` at ``fps`` (estimate)."""
        if frames is None:
            return None
        if self.fps is None or not fps or self.fps >= fps:
            return frames
        return int(np.ceil(frames / fps * self.fps))


_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _video_to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """BGR uint8; I420 + cv2.cvtColor where possible (faster than swscale's bgr24)."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 BGR (``InputError`` if unsupported or undecodable)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unsupported image type '{path.suffix}' "
                         f"(supported: {', '.join(IMAGE_SUFFIXES)})")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise InputError(f"{path}: cannot read image ({e.strerror or e})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(f"{path}: cannot decode image (corrupt or unsupported format)")
    return image


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in natural name order (``img2`` before ``img10``)."""
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: _natural_key(p.name))


class MediaSource:
    """An opened input: ``info`` at once, frames by iterating (decoded on a reader thread).

    Use as a context manager (or call :meth:`close`) so the reader thread stops when the
    consumer stops early.

    Args:
        input: a video/image path, a folder of images, or a stream URL.
        fps: sample this many frames per second of media time (None: every frame).
            A folder of images counts as one image per second.
        queue_size: frames decoded ahead of the consumer.
        transform: optional function applied to each kept image on the reader thread
            (e.g. the model-input resize), so it overlaps with inference.
    """

    def __init__(self, input: str | Path, *, fps: float | None = None, queue_size: int = 8,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self._sampler = _Sampler(fps)
        self.sample_fps = fps
        self._transform = transform
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._container: av.container.InputContainer | None = None
        self._images: list[Path] = []
        self.dropped = 0
        self.decoded = 0
        text = str(input)
        if is_stream_url(text):
            self.info = self._open_container(text, stream=True)
        else:
            path = Path(text).expanduser()
            if not path.exists():
                raise InputError(f"{path}: input not found")
            if path.is_dir():
                self._images = list_images(path)
                if not self._images:
                    raise InputError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
                first = read_image(self._images[0])
                self.info = MediaInfo(str(path), path.name, MediaKind.FOLDER, first.shape[1],
                                      first.shape[0], None, len(self._images))
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                first = read_image(path)
                self._images = [path]
                self.info = MediaInfo(str(path), path.name, MediaKind.IMAGE, first.shape[1],
                                      first.shape[0], None, 1)
            else:
                self.info = self._open_container(str(path), stream=False)
        self.expected_frames = (self._sampler.expected(self.info.frames, self.info.fps)
                                if self.info.kind is MediaKind.VIDEO else
                                self._sampler.expected(self.info.frames, 1.0))

    # -- opening -------------------------------------------------------------------------------

    def _open_container(self, target: str, *, stream: bool) -> MediaInfo:
        shown = redact(target) if stream else target
        options = {"rtsp_transport": "tcp"} if target.lower().startswith("rtsp") else {}
        try:
            container = av.open(target, options=options,
                                timeout=STREAM_TIMEOUT_S if stream else None)
        except av.error.FileNotFoundError:
            raise InputError(f"{shown}: input not found") from None
        except av.error.PermissionError:
            raise InputError(f"{shown}: permission denied") from None
        except (av.error.FFmpegError, OSError) as e:
            what = "cannot open stream" if stream else "not a readable video (corrupt or unsupported)"
            raise InputError(f"{shown}: {what}: {redact(_short(e))}") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{shown}: no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        self._container = container
        rate = vs.average_rate or vs.guessed_rate
        fps = float(rate) if rate else None
        frames = int(vs.frames) if vs.frames else None
        if frames is None and fps and container.duration and not stream:
            frames = int(round(container.duration / av.time_base * fps))
        if stream:
            name = redact(target)
        else:
            name = Path(target).name
        codec = vs.codec_context.name if vs.codec_context else None
        return MediaInfo(shown, name, MediaKind.STREAM if stream else MediaKind.VIDEO,
                         vs.codec_context.width or None, vs.codec_context.height or None,
                         fps, None if stream else frames, codec)

    # -- reading -------------------------------------------------------------------------------

    def __enter__(self) -> MediaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is not None:
            raise RuntimeError("a MediaSource can be iterated once")
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.info.name}",
                                        daemon=True)
        self._thread.start()
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            assert isinstance(item, Frame)
            yield item

    def _put(self, item: object) -> bool:
        """Queue an item; False when the consumer has gone."""
        live = self.info.kind is MediaKind.STREAM and isinstance(item, Frame)
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if live:
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        return False

    def _run(self) -> None:
        try:
            if self._container is not None:
                self._decode_video()
            else:
                self._decode_images()
        except InputError as e:
            self._put(_Failure(e))
            return
        except (av.error.FFmpegError, OSError) as e:
            where = f"{self.info.input}: decoding failed after frame {self.decoded}"
            self._put(_Failure(InputError(f"{where}: {redact(_short(e))}")))
            return
        except BaseException as e:  # a bug: hand it to the consumer with its traceback
            self._put(_Failure(e))
            return
        self._put(_END)

    def _emit(self, index: int, pts: float, image: np.ndarray, file: str | None = None) -> bool:
        if self._transform is not None:
            image = self._transform(image)
        frame = Frame(camera=self.info.name, index=index, pts_s=pts, wall_ts=time.time(),
                      image=image, file=file)
        return self._put(frame)

    def _decode_video(self) -> None:
        container = self._container
        assert container is not None
        vs = container.streams.video[0]
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
        fps = self.info.fps or 25.0
        try:
            for index, vf in enumerate(container.decode(vs)):
                self.decoded = index + 1
                pts = (vf.time - start) if vf.time is not None else index / fps
                if not self._sampler.take(pts):
                    continue
                if not self._emit(index, pts, _video_to_bgr(vf)):
                    return
        finally:
            container.close()
        if self.decoded == 0:
            raise InputError(f"{self.info.input}: no decodable video frames (corrupt or empty)")
        if self.info.frames and self.decoded < 0.98 * self.info.frames:
            log.warning("%s: input ended after %d of %d frames (truncated file?)",
                        self.info.input, self.decoded, self.info.frames)

    def _decode_images(self) -> None:
        for index, path in enumerate(self._images):
            if self._stop.is_set():
                return
            self.decoded = index + 1
            if not self._sampler.take(float(index)):
                continue
            if not self._emit(index, float(index), read_image(path), path.name):
                return

    def close(self) -> None:
        """Stop the reader thread and release the input."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a reader waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
        elif self._container is not None:
            self._container.close()
            self._container = None


def _short(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return str(text).splitlines()[0] if text else type(e).__name__


def open_media(input: str | Path, *, fps: float | None = None, queue_size: int = 8,
               transform: Callable[[np.ndarray], np.ndarray] | None = None) -> MediaSource:
    """Open an input for reading (see :class:`MediaSource`); raises ``InputError`` at once for
    a missing path, an empty folder, an unsupported or corrupt file."""
    return MediaSource(input, fps=fps, queue_size=queue_size, transform=transform)
