"""Simulated cameras for the capacity benchmark: a looped clip decoded in real time.

Each :class:`ClipStream` thread decodes every frame of a clip at its media rate (looping it), as
a camera's reader would, converts to BGR only the frames it hands over (``emit_fps`` per second)
and puts them into a latest-frame slot. Decoding uses NVDEC through PyAV's ``hwaccel`` when
:func:`probe_decoder` finds it working, else the CPU; which one was used is reported.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from streamcount.engine.cache import cache_root
from streamcount.errors import InputError
from streamcount.messages import Frame
from streamcount.sources.slots import FrameSlot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeMode:
    """How the streams decode: ``"cuda"`` (NVDEC via PyAV hwaccel) or ``"software"``."""

    name: str
    note: str = ""


def _hwaccel(kind: str) -> object:
    from av.codec.hwaccel import HWAccel

    return HWAccel(device_type=kind, allow_software_fallback=False)


def probe_decoder(path: str | Path, hwaccel: str = "auto") -> DecodeMode:
    """Decode one frame with NVDEC to see whether it works (``hwaccel`` = auto|cuda|none)."""
    if hwaccel == "none":
        return DecodeMode("software", "hardware decoding not requested")
    try:
        from av.codec.hwaccel import hwdevices_available

        devices = hwdevices_available()
    except ImportError:
        return DecodeMode("software", f"PyAV {av.__version__} has no hwaccel support")
    if "cuda" not in devices:
        return DecodeMode("software", "this PyAV/FFmpeg build has no CUDA hwaccel")
    try:
        with av.open(str(path), hwaccel=_hwaccel("cuda")) as c:
            next(c.decode(video=0))
    except (av.error.FFmpegError, OSError, StopIteration, ValueError) as e:
        return DecodeMode("software", f"NVDEC unavailable ({type(e).__name__}: {e})")
    return DecodeMode("cuda", "NVDEC via PyAV hwaccel, frames downloaded to host memory")


def to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """BGR uint8; I420 + cv2.cvtColor where possible (faster than swscale's bgr24)."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def ensure_clip(size: tuple[int, int] = (1080, 1920), seconds: float = 4.0, fps: int = 25,
                directory: Path | None = None) -> Path:
    """A synthetic H.264 clip (moving texture, 2 s GOP, no B-frames, like an IP camera),
    generated once with PyAV's bundled FFmpeg/libx264 and cached."""
    h, w = size
    d = directory or cache_root() / "bench"
    path = d / f"synthetic_{w}x{h}_{fps}fps_{seconds:g}s.mp4"
    if path.is_file() and path.stat().st_size > 0:
        return path
    d.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([110 + 90 * np.sin(xx / (40 + 13 * c) + c) * np.cos(yy / (31 + 7 * c)) for c
                     in range(3)], axis=-1)
    base = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    n = max(1, int(round(seconds * fps)))
    log.info("generating benchmark clip %s (%d frames)", path, n)
    with av.open(str(tmp), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"preset": "veryfast", "g": str(2 * fps), "bf": "0"}
        for i in range(n):
            img = np.roll(base, (i * 3, i * 7), axis=(0, 1))
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            for pkt in st.encode(vf):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    tmp.replace(path)
    return path


def clip_info(path: str | Path) -> tuple[int, int, float]:
    """(height, width, fps) of a clip's first video stream (InputError if unreadable)."""
    try:
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            rate = float(vs.average_rate or vs.guessed_rate or 25)
            return vs.codec_context.height, vs.codec_context.width, rate
    except (av.error.FFmpegError, OSError, IndexError) as e:
        raise InputError(f"{path}: not a readable video ({e})") from None


class ClipStream(threading.Thread):
    """One simulated camera: decode ``path`` in a loop at its frame rate; every
    ``1/emit_fps`` s of media time hand the current frame (BGR) to ``slot``."""

    def __init__(self, name: str, path: str | Path, slot: FrameSlot, *, emit_fps: float,
                 decode: DecodeMode, stop: threading.Event, start_delay_s: float = 0.0,
                 clock=time.monotonic, wall=time.time) -> None:
        super().__init__(name=f"stream-{name}", daemon=True)
        self.camera = name
        self.path = str(path)
        self.slot = slot
        self.emit_period = 1.0 / emit_fps
        self.decode = decode
        self._stop_event = stop
        self._delay = start_delay_s
        self._clock, self._wall = clock, wall
        self.decoded = 0
        self.emitted = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 - reported in the results, never silent
            self.error = f"{type(e).__name__}: {e}"
            log.warning("stream %s stopped: %s", self.camera, self.error)

    def _open(self) -> av.container.InputContainer:
        if self.decode.name == "cuda":
            return av.open(self.path, hwaccel=_hwaccel("cuda"))
        c = av.open(self.path)
        vs = c.streams.video[0]
        vs.thread_type = "SLICE"
        vs.thread_count = 1  # one core per ~12 1080p25 streams; many streams share the CPUs
        return c

    def _loop(self) -> None:
        if self._delay and self._stop_event.wait(self._delay):
            return
        anchor = self._clock()
        offset = 0.0  # media time of the current loop's start
        next_emit = 0.0
        index = 0
        while not self._stop_event.is_set():
            last = 0.0
            with self._open() as c:
                vs = c.streams.video[0]
                period = 1.0 / float(vs.average_rate or 25)
                for vf in c.decode(vs):
                    if self._stop_event.is_set():
                        return
                    self.decoded += 1
                    t = offset + (float(vf.time) if vf.time is not None else index * period)
                    last = t - offset
                    index += 1
                    wait = anchor + t - self._clock()
                    if wait < -1.0:  # fell more than a second behind: re-anchor, no burst
                        anchor -= wait
                    elif wait > 0 and self._stop_event.wait(wait):
                        return
                    if t + 1e-6 < next_emit:
                        continue
                    missed = int((t - next_emit) // self.emit_period)  # whole periods skipped
                    next_emit += self.emit_period * (missed + 1)
                    frame = Frame(camera=self.camera, index=index, pts_s=t, wall_ts=self._wall(),
                                  image=to_bgr(vf))
                    if not self.slot.put(frame):
                        return
                    self.emitted += 1
            offset += last + period


def start_delays(n: int, period: float, seed: int = 0) -> list[float]:
    """Random start offsets within one emission period, so streams are not in lockstep."""
    r = random.Random(seed)
    return [r.uniform(0.0, period) for _ in range(n)]
