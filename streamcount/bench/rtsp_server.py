"""A real RTSP server: GStreamer's gst-rtsp-server through Debian's python3-gi, for the capacity
benchmark (``streamcount bench capacity --rtsp``), the live soak and the tests.

Two roles in one file:

* **Server script**, run by the *system* interpreter (``/usr/bin/python3``, which has ``gi``;
  the venv does not)::

      /usr/bin/python3 streamcount/bench/rtsp_server.py PORT CLIP.mp4 [MOUNT]

  serves ``rtsp://127.0.0.1:PORT/MOUNT`` (default ``/cam``) from an H.264 MP4 without
  re-encoding, paced in real time, over TCP and UDP; every client gets its own pipeline from
  the start of the clip and the stream ends with the clip (use :func:`repeat_clip` for a long
  one). Prints ``READY`` once listening. Imports only the standard library at module level
  (the system interpreter has no numpy and no streamcount).

* **Helpers** for the venv: :func:`gst_rtsp_missing`, :func:`make_h264_clip`,
  :func:`repeat_clip`, :class:`RtspServer` (start / kill / restart on a fixed free port,
  SIGSTOP/SIGCONT to hang it) and :func:`free_port`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve()


# ------------------------------------------------------------------------------------------
# server (system python3 + gi)


def _serve(port: int, clip: str, mount: str) -> None:  # pragma: no cover - subprocess
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    gi.require_version("GstRtsp", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{clip}" ! qtdemux ! h264parse config-interval=-1 '
                       f'! rtph264pay name=pay0 pt=96 )')
    factory.set_shared(False)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)

    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("READY", flush=True)
    loop_ = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda *_: (loop_.quit(), False)[1])
    loop_.run()


# ------------------------------------------------------------------------------------------
# pytest helpers (venv)


def gst_rtsp_missing() -> str | None:
    """Why the RTSP server cannot run here (None when it can)."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (the RTSP test server needs Debian's python3-gi)"
    probe = ("import gi; gi.require_version('Gst', '1.0'); "
             "gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('qtdemux') and Gst.ElementFactory.find('rtph264pay')")
    r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"gst-rtsp-server not usable (python3-gi, gir1.2-gst-rtsp-server-1.0): {tail}"
    return None


def ffmpeg_missing() -> str | None:
    """Why ffmpeg cannot be used (None when it can)."""
    return None if shutil.which("ffmpeg") else "ffmpeg not found on PATH"


def make_h264_clip(src: Path, dst: Path, *, seconds: float = 60.0, width: int = 384,
                   fps: float | None = None, gop: int = 20, vf: str | None = None) -> Path:
    """Encode ``src`` (looped as needed) into an H.264 MP4 of ``seconds``: libx264 veryfast,
    GOP ``gop``, no B-frames, yuv420p, scaled to ``width`` (keeping the aspect ratio)."""
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    filters = [f"scale={width}:-2"]
    if fps:
        filters.append(f"fps={fps}")
    if vf:
        filters.append(vf)
    tmp = dst.with_suffix(".part.mp4")
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(src),
           "-t", f"{seconds}", "-vf", ",".join(filters), "-an", "-c:v", "libx264",
           "-preset", "veryfast", "-g", str(gop), "-bf", "0", "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", str(tmp)]
    subprocess.run(cmd, check=True, timeout=300)
    tmp.replace(dst)
    return dst


def repeat_clip(clip: Path, dst: Path, times: int) -> Path:
    """``clip`` played ``times`` times in a row, without re-encoding (cheap)."""
    if dst.exists():
        return dst
    tmp = dst.with_suffix(".part.mp4")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop",
                    str(times - 1), "-i", str(clip), "-c", "copy", "-movflags", "+faststart",
                    str(tmp)], check=True, timeout=120)
    tmp.replace(dst)
    return dst


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServer:
    """One gst-rtsp-server subprocess on a fixed port, restartable on the same port.

    Example:
        >>> with RtspServer(clip) as srv:  # doctest: +SKIP
        ...     url = srv.url; srv.kill(); srv.start()
    """

    def __init__(self, clip: Path, port: int | None = None, mount: str = "/cam") -> None:
        self.clip = Path(clip)
        self.port = port or free_port()
        self.mount = mount if mount.startswith("/") else "/" + mount
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The stream URL."""
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> RtspServer:
        """Start the server and wait until it listens (retries while the port is in use)."""
        if self.running:
            return self
        deadline = time.monotonic() + timeout
        last_err = ""
        while time.monotonic() < deadline:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(SCRIPT), str(self.port), str(self.clip), self.mount],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={k: v for k, v in os.environ.items()
                     if not k.startswith(("PYTHON", "VIRTUAL_ENV"))})
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line.strip() == "READY" and self._listening(deadline):
                self.starts += 1
                return self
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            last_err = (err or "").strip().splitlines()[-1:] and err.strip().splitlines()[-1]
            self.proc = None
            time.sleep(0.5)
        raise RuntimeError(f"RTSP server did not start on port {self.port}: {last_err}")

    def _listening(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM by default: clients see a clean end of stream)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        self.proc = None

    def hang(self) -> None:
        """SIGSTOP the server: connections stay open but nothing arrives (a hung camera)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a hung server."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> RtspServer:
        """Kill and start again on the same port."""
        self.kill()
        return self.start()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
        self.kill()


if __name__ == "__main__":  # pragma: no cover - the server subprocess
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) < 2:  # usage
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    _serve(int(args[0]), args[1], args[2] if len(args) > 2 else "/cam")
