"""Camera reader: one thread per camera decoding with PyAV into a :class:`FrameSlot`.

Sources: RTSP (TCP by default), HTTP(S) MJPEG/HLS and other stream URLs, video files (with
``loop``: reopened at end of file, media time keeps increasing) and V4L2 devices
(``/dev/videoN``).

The reader is an explicit state machine (:class:`SourceState`); every transition is published
as a :class:`~streamcount.messages.StatusEvent` through ``on_status``::

    CONNECTING ──first frame──► STREAMING ──EOF / error / stall──► RECONNECTING ─┐
        │  └─open failed──────────────────────────────────────────► RECONNECTING │
        │                                    ▲ (backoff, reopen) ◄───────────────┘
        └─ permanent error (file missing, unreadable) ─► FAILED
    non-loop file ended, or stop() ─► STOPPED

For live sources a *normal end* of the decode iterator is a disconnect (a killed RTSP server
ends the iterator without an exception); ``av.error.FFmpegError`` and ``OSError`` are caught
and retried with exponential backoff. A watchdog treats "no decoded frame for ``stall_s``" as a
stall (PyAV's read timeout covers a server that sends nothing; a per-packet check covers one
that sends undecodable data). A black frame is never substituted for a missing one: while a
camera is not streaming it simply produces no frames. URLs are redacted in every log line,
status reason and error.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import av
import cv2
import numpy as np

from streamcount.config.redact import redact
from streamcount.messages import Frame, StatusEvent
from streamcount.sources.backoff import Backoff
from streamcount.sources.health import RateMeter
from streamcount.sources.slots import FrameSlot

log = logging.getLogger(__name__)

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class SourceState(str, Enum):
    """Lifecycle of a camera reader."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def online(self) -> bool:
        """Whether frames are flowing."""
        return self is SourceState.STREAMING

    @property
    def terminal(self) -> bool:
        """Whether the reader has ended for good."""
        return self in (SourceState.STOPPED, SourceState.FAILED)


#: allowed transitions; anything else is a bug and raises
TRANSITIONS: dict[SourceState, frozenset[SourceState]] = {
    SourceState.CONNECTING: frozenset({SourceState.STREAMING, SourceState.RECONNECTING,
                                       SourceState.STOPPED, SourceState.FAILED}),
    SourceState.STREAMING: frozenset({SourceState.RECONNECTING, SourceState.STOPPED,
                                      SourceState.FAILED}),
    SourceState.RECONNECTING: frozenset({SourceState.STREAMING, SourceState.STOPPED,
                                         SourceState.FAILED}),
    SourceState.STOPPED: frozenset(),
    SourceState.FAILED: frozenset(),
}


class SourceKind(str, Enum):
    """What a camera URL points at."""

    RTSP = "rtsp"
    STREAM = "stream"  # http(s) MJPEG/HLS, rtmp, udp, srt, ...
    FILE = "file"
    DEVICE = "device"  # V4L2

    @property
    def live(self) -> bool:
        """Live sources drop frames and reconnect; files are lossless and may loop."""
        return self is not SourceKind.FILE


def source_kind(url: str) -> SourceKind:
    """Classify a camera URL or path."""
    low = url.lower()
    if low.startswith(("rtsp://", "rtsps://")):
        return SourceKind.RTSP
    if low.startswith("file://"):
        return SourceKind.FILE
    if _URL_RE.match(url):
        return SourceKind.STREAM
    if url.startswith("/dev/video"):
        return SourceKind.DEVICE
    return SourceKind.FILE


@dataclass(frozen=True)
class ReaderSettings:
    """Everything a :class:`CameraReader` needs, resolved from the camera's config.

    Attributes:
        camera: camera name (carried by frames and status events).
        url: RTSP/HTTP URL, file path or ``/dev/videoN`` (may hold credentials; never logged
            unredacted).
        loop: files only: reopen at end of file instead of stopping.
        realtime: files only: pace frames to media time (a replayed file behaves like a
            camera); otherwise files are read as fast as the consumer takes them.
        emit_fps: convert and hand over at most this many frames per second (media time for
            files, wall time for live sources); None: every decoded frame. Every frame is
            still decoded.
        rtsp_transport: ``tcp`` (default) or ``udp``.
        open_timeout_s: how long opening may take.
        stall_s: no decoded frame for this long = stalled (also the PyAV read timeout).
        reconnect_initial_s, reconnect_max_s, reconnect_jitter: backoff between attempts.
        max_attempts: consecutive failed attempts before FAILED (None: retry forever).
        device_format: V4L2 pixel format (``input_format``, e.g. ``mjpeg``), devices only.
        options: extra FFmpeg options passed to ``av.open``.
        queue_hint: not used by the reader; recorded for stats.
    """

    camera: str
    url: str
    loop: bool = False
    realtime: bool = True
    emit_fps: float | None = None
    rtsp_transport: str = "tcp"
    open_timeout_s: float = 10.0
    stall_s: float = 10.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    reconnect_jitter: float = 0.2
    max_attempts: int | None = None
    device_format: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> SourceKind:
        """The source kind of :attr:`url`."""
        return source_kind(self.url)

    @property
    def shown_url(self) -> str:
        """The URL with credentials redacted (safe to log)."""
        return redact(self.url)


@dataclass(frozen=True)
class ReaderStats:
    """A snapshot of a reader's counters (all counts since the reader started)."""

    camera: str
    state: SourceState
    reason: str | None
    decoded: int
    emitted: int
    dropped: int
    reconnects: int
    reconnect_attempts: int
    loops: int
    decode_fps: float
    source_fps: float | None
    last_frame_age_s: float | None
    width: int | None
    height: int | None


class _Permanent(Exception):
    """An error retrying cannot fix (file missing, not a video)."""


class _Ended(Exception):
    """The decode loop ended early for ``reason`` (a stall)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _short(e: BaseException) -> str:
    """A one-line, redacted description of an exception."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return redact(str(text).splitlines()[0])


def _to_bgr(vf: av.VideoFrame) -> np.ndarray:
    """BGR uint8; I420 + ``cv2.cvtColor`` where possible (faster than swscale's bgr24)."""
    if vf.format.name in ("yuv420p", "yuvj420p") and vf.width % 2 == 0 and vf.height % 2 == 0:
        return cv2.cvtColor(vf.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return vf.to_ndarray(format="bgr24")


class CameraReader:
    """Decodes one camera on its own thread into ``slot``.

    Args:
        settings: the resolved source settings.
        slot: where frames go (a :class:`~streamcount.sources.slots.LatestSlot` for live
            sources, a :class:`~streamcount.sources.slots.FifoSlot` for files).
        on_status: called (from the reader thread) with every state transition.
        clock: monotonic clock (seconds), injectable for tests.
        wall: wall clock (UNIX seconds) stamped on frames and events.
        backoff: reconnect pacing (default from the settings).

    Example:
        >>> reader = CameraReader(settings, LatestSlot(1), on_status=print)  # doctest: +SKIP
        >>> reader.start(); ...; reader.stop()
    """

    def __init__(self, settings: ReaderSettings, slot: FrameSlot,
                 on_status: Callable[[StatusEvent], None] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.kind = settings.kind
        self.slot = slot
        self._on_status = on_status
        self._clock = clock
        self._wall = wall
        self._backoff = backoff or Backoff(settings.reconnect_initial_s,
                                           settings.reconnect_max_s, settings.reconnect_jitter)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state = SourceState.CONNECTING
        self._reason: str | None = None
        self._rate = RateMeter()
        #: convert and hand over at most this many frames per second (None: all); may be
        #: changed while running
        self.emit_fps = settings.emit_fps
        self.decoded = 0
        self.emitted = 0
        self.reconnects = 0
        self.reconnect_attempts = 0
        self.loops = 0
        self.source_fps: float | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.last_frame_mono: float | None = None
        self._started_mono = clock()
        # media-time bookkeeping (files: continues across loops)
        self._pts_offset = 0.0
        self._last_pts = 0.0
        self._next_emit: float | None = None
        self._pace_anchor: tuple[float, float] | None = None  # (mono, pts)

    # -- public API ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The camera name."""
        return self.settings.camera

    @property
    def state(self) -> SourceState:
        """The current state."""
        return self._state

    @property
    def reason(self) -> str | None:
        """Why the reader is in its current state (None while streaming normally)."""
        return self._reason

    def start(self) -> None:
        """Start the reader thread (publishes CONNECTING)."""
        if self._thread is not None:
            raise RuntimeError(f"reader {self.name} already started")
        self._publish(SourceState.CONNECTING, None)
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None, reason: str = "stopped") -> None:
        """Ask the thread to stop, close the slot and wait up to ``timeout`` seconds
        (default: ``stall_s`` + 2; 0: do not wait, see :meth:`join`); publishes STOPPED with
        ``reason`` (no event follows it).

        A read blocked on a hung server ends within the read timeout (``stall_s``).
        """
        self._stop.set()
        self.slot.close()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.settings.stall_s + 2.0)
            if self._thread.is_alive() and timeout != 0:
                log.warning("camera %s: reader thread did not stop within the timeout",
                            self.name)
        with self._lock:
            if not self._state.terminal:
                self._transition(SourceState.STOPPED, reason)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reader thread to end (a non-loop file, FAILED, or after stop)."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the reader thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def last_frame_age(self) -> float | None:
        """Seconds since the last decoded frame (None before the first one)."""
        last = self.last_frame_mono
        return None if last is None else max(0.0, self._clock() - last)

    def stats(self) -> ReaderStats:
        """A snapshot of the counters."""
        return ReaderStats(
            camera=self.name, state=self._state, reason=self._reason, decoded=self.decoded,
            emitted=self.emitted, dropped=self.slot.dropped, reconnects=self.reconnects,
            reconnect_attempts=self.reconnect_attempts, loops=self.loops,
            decode_fps=self._rate.rate(self._clock()), source_fps=self.source_fps,
            last_frame_age_s=self.last_frame_age(), width=self.width, height=self.height)

    # -- state machine ---------------------------------------------------------------------------

    def _transition(self, new: SourceState, reason: str | None) -> None:
        """Change state (lock held by the caller) and publish the transition."""
        old = self._state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise RuntimeError(f"camera {self.name}: illegal transition {old.value} -> {new.value}")
        self._state = new
        self._reason = reason
        level = logging.WARNING if new in (SourceState.RECONNECTING, SourceState.FAILED) \
            else logging.INFO
        log.log(level, "camera %s: %s -> %s%s", self.name, old.value, new.value,
                f" ({reason})" if reason else "")
        self._publish(new, reason)

    def _publish(self, state: SourceState, reason: str | None) -> None:
        if self._on_status is None:
            return
        event = StatusEvent(camera=self.name, state=state.value, reason=reason, ts=self._wall(),
                            fps=self.source_fps)
        try:
            self._on_status(event)
        except Exception:  # a faulty listener must not kill the reader
            log.exception("camera %s: status listener failed", self.name)

    def _set(self, new: SourceState, reason: str | None = None) -> bool:
        """Transition unless stopping; False when the reader must end."""
        with self._lock:
            if self._state.terminal:
                return False
            if self._stop.is_set() and new is not SourceState.STOPPED:
                return False
            self._transition(new, reason)
            return True

    # -- thread body -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # a bug: report it as FAILED rather than dying silently
            log.exception("camera %s: reader crashed", self.name)
            self._set(SourceState.FAILED, f"reader error: {_short(e)}")

    def _loop(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            try:
                container = self._open()
            except _Permanent as e:
                self._set(SourceState.FAILED, str(e))
                return
            except (av.error.FFmpegError, OSError) as e:
                if self.kind is SourceKind.FILE:
                    self._set(SourceState.FAILED, f"cannot open {s.shown_url}: {_short(e)}")
                    return
                if not self._retry(f"cannot open: {_short(e)}"):
                    return
                continue
            try:
                self._decode(container)
                reason, eof = "stream ended", True
            except _Ended as e:
                reason, eof = e.reason, False
            except _Permanent as e:
                self._set(SourceState.FAILED, str(e))
                return
            except (av.error.FFmpegError, OSError) as e:
                if isinstance(e, av.error.ExitError):  # PyAV's read timeout fired
                    reason, eof = f"stalled: no data for {s.stall_s:g} s", False
                else:
                    reason, eof = f"stream error: {_short(e)}", False
            finally:
                try:
                    container.close()
                except (av.error.FFmpegError, OSError):
                    pass
            if self._stop.is_set():
                return  # stop() publishes STOPPED with its reason
            if self.kind is SourceKind.FILE and eof:
                if not s.loop:
                    self._set(SourceState.STOPPED, "end of file")
                    return
                self.loops += 1
                self._pts_offset = self._last_pts + self._frame_period()
                continue  # reopen at once: a loop is not a reconnect
            if self.kind is SourceKind.FILE:
                # a file that fails mid-way will fail the same way again
                self._set(SourceState.FAILED, reason)
                return
            if not self._retry(reason):
                return

    def _retry(self, reason: str) -> bool:
        """Enter RECONNECTING, wait out the backoff; False when the reader must end."""
        s = self.settings
        if s.max_attempts is not None and self._backoff.attempts >= s.max_attempts:
            self._set(SourceState.FAILED, f"{reason}; gave up after {s.max_attempts} attempts")
            return False
        if self._state is SourceState.RECONNECTING:
            with self._lock:
                self._reason = reason  # repeated failures: no new transition, fresh reason
        elif not self._set(SourceState.RECONNECTING, reason):
            return False
        if self.kind.live:
            self.slot.clear()  # frames from before the outage are stale
        delay = self._backoff.next_delay()
        log.info("camera %s: %s; retrying in %.1f s", self.name, reason, delay)
        if self._stop.wait(delay):
            return False
        self.reconnect_attempts += 1
        return True

    # -- opening ---------------------------------------------------------------------------------

    def _open(self) -> av.container.InputContainer:
        s = self.settings
        shown = s.shown_url
        options = dict(s.options)
        kwargs: dict[str, object] = {}
        target = s.url
        if self.kind is SourceKind.FILE:
            if target.lower().startswith("file://"):
                target = target[len("file://"):]
            if not Path(target).is_file():
                raise _Permanent(f"file not found: {shown}")
        else:
            us = str(int(s.stall_s * 1_000_000))
            if self.kind is SourceKind.RTSP:
                options.setdefault("rtsp_transport", s.rtsp_transport)
                options.setdefault("timeout", us)
            elif self.kind is SourceKind.STREAM and target.lower().startswith(("http://",
                                                                              "https://")):
                options.setdefault("rw_timeout", us)
            elif self.kind is SourceKind.DEVICE:
                kwargs["format"] = "v4l2"
                if s.device_format:
                    options.setdefault("input_format", s.device_format)
            kwargs["timeout"] = (s.open_timeout_s, s.stall_s)
        try:
            container = av.open(target, options=options, **kwargs)
        except av.error.FileNotFoundError:
            if self.kind is SourceKind.FILE:
                raise _Permanent(f"file not found: {shown}") from None
            raise
        except av.error.InvalidDataError as e:
            if self.kind is SourceKind.FILE:
                raise _Permanent(f"not a readable video: {shown} ({_short(e)})") from None
            raise
        if not container.streams.video:
            container.close()
            if self.kind is SourceKind.FILE:
                raise _Permanent(f"no video stream in {shown}")
            raise av.error.InvalidDataError(0, "no video stream")  # maybe a later reconnect has
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        rate = vs.average_rate or vs.guessed_rate
        if rate:
            self.source_fps = float(rate)
        log.debug("camera %s: opened %s (%s)", self.name, shown, vs.codec_context.name)
        return container

    def _frame_period(self) -> float:
        return 1.0 / self.source_fps if self.source_fps else 0.04

    # -- decoding --------------------------------------------------------------------------------

    def _decode(self, container: av.container.InputContainer) -> None:
        """Decode until end of stream (returns), a stall (raises :class:`_Ended`) or stop."""
        s = self.settings
        vs = container.streams.video[0]
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None else None
        connected = self._clock()
        frames_here = 0
        last_frame = connected
        first_pts: float | None = None
        for packet in container.demux(vs):
            if self._stop.is_set():
                return
            for vf in packet.decode():
                now = self._clock()
                frames_here += 1
                last_frame = now
                self.decoded += 1
                self.last_frame_mono = now
                self._rate.tick(now)
                if frames_here == 1:
                    self.width, self.height = vf.width, vf.height
                    was = self._state
                    if was is not SourceState.STREAMING:
                        if not self._set(SourceState.STREAMING, None):
                            return
                        self._backoff.reset()
                        if was is SourceState.RECONNECTING:
                            self.reconnects += 1
                pts = self._media_time(vf, start, frames_here, now, connected)
                if first_pts is None:
                    first_pts = pts
                if not self._due(pts, now):
                    continue
                if self.kind is SourceKind.FILE and s.realtime:
                    if not self._pace(pts):
                        return
                image = _to_bgr(vf)
                frame = Frame(camera=self.name, index=self.decoded - 1, pts_s=pts,
                              wall_ts=self._wall(), image=image)
                if not self._hand_over(frame):
                    return
            if self.kind.live and self._clock() - last_frame > s.stall_s:
                raise _Ended(f"stalled: no frame for {s.stall_s:g} s")
        if frames_here == 0 and self.kind is SourceKind.FILE:
            raise _Permanent(f"no decodable video frames in {s.shown_url}")

    def _media_time(self, vf: av.VideoFrame, start: float | None, n: int, now: float,
                    connected: float) -> float:
        """Media time of a frame: stream pts for files (continuing across loops); seconds
        since the reader started for live sources (their pts restart on reconnect)."""
        if self.kind.live:
            return now - self._started_mono
        if vf.time is not None:
            t = float(vf.time) - (start or 0.0)
        else:
            t = (n - 1) * self._frame_period()
        pts = self._pts_offset + max(0.0, t)
        self._last_pts = pts
        return pts

    def _due(self, pts: float, now: float) -> bool:
        """Emission pre-sampling: the first frame of each ``1/emit_fps`` interval."""
        fps = self.emit_fps
        if not fps:
            return True
        t = pts if self.kind is SourceKind.FILE else now
        if self._next_emit is None or t + 1e-6 >= self._next_emit:
            base = t if self._next_emit is None else self._next_emit
            period = 1.0 / fps
            # skip whole periods missed (a gap in the stream) without bursting
            k = max(1, int((t - base) // period) + 1)
            self._next_emit = base + k * period
            return True
        return False

    def _pace(self, pts: float) -> bool:
        """Sleep until the frame's media time (files with ``realtime``); False on stop."""
        now = self._clock()
        if self._pace_anchor is None:
            self._pace_anchor = (now, pts)
        t0, p0 = self._pace_anchor
        wait = (t0 + (pts - p0)) - now
        if wait < -1.0:  # fell behind (slow consumer): re-anchor rather than burst
            self._pace_anchor = (now, pts)
            return not self._stop.is_set()
        if wait > 0:
            return not self._stop.wait(wait)
        return not self._stop.is_set()

    def _hand_over(self, frame: Frame) -> bool:
        """Put a frame into the slot (a file's FIFO blocks while full); False on stop."""
        slot = self.slot
        if slot.lossless:
            while not self._stop.is_set():
                if slot.put(frame, timeout=0.25):  # type: ignore[call-arg]
                    self.emitted += 1
                    return True
                if getattr(slot, "closed", False):
                    return False
            return False
        if not slot.put(frame):
            return False
        self.emitted += 1
        return True
