"""Annotated MP4: the density heat-map blended over each frame, region outlines, live counts
and, where people were counted by detection, their boxes and the counting method. Rendering
and H.264 encoding run on the sink's own thread behind a bounded queue."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from streamcount.engine.preprocess import DENSITY_STRIDE, input_coverage
from streamcount.regions import ALL, Region

log = logging.getLogger(__name__)

#: region outline colours (BGR), cycled
PALETTE = ((255, 255, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 128, 0),
           (0, 128, 255), (128, 0, 255), (255, 255, 0))
#: colour of the boxes of people counted by detection (BGR)
BOX_COLOUR = (80, 255, 80)
_END = object()


def pick_codec() -> str:
    """``libx264`` when this FFmpeg build has it, else ``mpeg4``."""
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return "mpeg4"


class HeatmapRenderer:
    """Draws one annotated frame. The colour scale follows a slowly decaying peak of the
    density, so an empty scene stays dark rather than amplifying noise."""

    def __init__(self, regions: Sequence[Region], alpha: float = 0.6) -> None:
        self.regions = tuple(regions)
        self.alpha = alpha
        self._peak = 0.0

    def render(self, image: np.ndarray, density: np.ndarray, counts: Mapping[str, float],
               time_s: float | None = None, boxes: np.ndarray | None = None,
               method: str | None = None) -> np.ndarray:
        """``image`` (uint8 BGR) with the heat-map, outlines and counts drawn on a copy, plus
        ``boxes`` (``K x 4`` x1, y1, x2, y2 in ``image`` pixels: people counted by detection)
        with a dot at each foot point, and the counting ``method``."""
        h, w = image.shape[:2]
        d = np.maximum(density.astype(np.float32), 0.0)
        frame_peak = float(d.max()) if d.size else 0.0
        self._peak = max(frame_peak, 0.98 * self._peak, 1e-4)
        # the density map covers the top-left input_coverage of the frame (the input's crop)
        cy, cx = input_coverage((h, w), (d.shape[0] * DENSITY_STRIDE, d.shape[1] * DENSITY_STRIDE))
        dh, dw = min(h, int(round(h * cy))), min(w, int(round(w * cx)))
        level = np.zeros((h, w), np.float32)
        level[:dh, :dw] = np.clip(cv2.resize(d, (dw, dh), interpolation=cv2.INTER_LINEAR)
                                  / self._peak, 0, 1)
        heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
        weight = (self.alpha * np.sqrt(level))[..., None]
        out = (image.astype(np.float32) * (1 - weight) + heat.astype(np.float32) * weight)
        out = out.astype(np.uint8)
        for i, region in enumerate(self.regions):
            colour = PALETTE[i % len(PALETTE)]
            pts = np.round(np.asarray(region.polygon) * [w - 1, h - 1]).astype(np.int32)
            cv2.polylines(out, [pts], isClosed=True, color=colour, thickness=2, lineType=cv2.LINE_AA)
            text = f"{region.name}: {counts.get(region.name, 0.0):.1f}"
            cx, cy = _centroid(pts)
            tw = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)[0][0]
            _label(out, text, (int(cx - tw / 2), int(cy)), colour)
        for x1, y1, x2, y2 in np.round(boxes if boxes is not None else ()).astype(int):
            cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, 1, cv2.LINE_8)
            cv2.circle(out, ((x1 + x2) // 2, y2), 3, BOX_COLOUR, cv2.FILLED, cv2.LINE_AA)
        total = f"{ALL}: {counts.get(ALL, 0.0):.1f}" + (f" ({method})" if method else "")
        _label(out, total, (8, 24), (255, 255, 255), scale=0.7)
        if time_s is not None:
            _label(out, f"t = {time_s:.1f} s", (8, 46), (255, 255, 255))
        return out


def _label(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int],
           scale: float = 0.55) -> None:
    """Text on a dark box; ``org`` is the baseline start, kept inside the image."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = int(min(max(org[0], 2), max(2, img.shape[1] - tw - 4)))
    y = int(min(max(org[1], th + 4), img.shape[0] - base - 2))
    cv2.rectangle(img, (x - 2, y - th - 3), (x + tw + 2, y + base + 1), (0, 0, 0), cv2.FILLED)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _centroid(pts: np.ndarray) -> tuple[float, float]:
    """Area centroid of a polygon (vertex mean when degenerate)."""
    x, y = pts[:, 0].astype(np.float64), pts[:, 1].astype(np.float64)
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = cross.sum() / 2
    if abs(a) < 1e-9:
        return float(x.mean()), float(y.mean())
    return float(((x + xn) * cross).sum() / (6 * a)), float(((y + yn) * cross).sum() / (6 * a))


class AnnotatedVideoSink:
    """Writes ``annotated.mp4`` at the model input size.

    Frames are queued (bounded, blocking: files are lossless) and rendered and encoded on a
    worker thread. A failure of the encoder is logged and the sink stops writing; it never
    stops counting.

    Args:
        path: output file.
        size: (height, width) of the frames given to :meth:`write` (even numbers).
        fps: output frame rate.
        regions: polygons to outline.
        codec: encoder name (default: :func:`pick_codec`).
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float,
                 regions: Sequence[Region], *, queue_size: int = 8,
                 codec: str | None = None) -> None:
        self.path = Path(path)
        self.size = size
        self.codec = codec or pick_codec()
        self.frames = 0
        self.error: str | None = None
        self._closed = False
        self._renderer = HeatmapRenderer(regions)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(10)
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream(self.codec, rate=rate)
        self._stream.height, self._stream.width = size
        self._stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            self._stream.options = {"preset": "veryfast", "crf": "23"}
        else:
            self._stream.bit_rate = 4_000_000
        self._thread = threading.Thread(target=self._run, name="annotated-video", daemon=True)
        self._thread.start()

    def write(self, image: np.ndarray, density: np.ndarray, counts: Mapping[str, float],
              time_s: float | None = None, boxes: np.ndarray | None = None,
              method: str | None = None) -> None:
        """Queue one frame (blocks while the encoder is behind); ``boxes`` (people counted by
        detection, ``image`` pixels) and ``method`` are drawn when given."""
        if self.error is None:
            self._queue.put((image, density, dict(counts), time_s, boxes, method))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                break
            if self.error is not None:
                continue
            image, density, counts, time_s, boxes, method = item  # type: ignore[misc]
            try:
                if image.shape[:2] != self.size:
                    if boxes is not None:
                        boxes = boxes * np.array([self.size[1] / image.shape[1],
                                                  self.size[0] / image.shape[0]] * 2)
                    image = cv2.resize(image, (self.size[1], self.size[0]),
                                       interpolation=cv2.INTER_AREA)
                out = self._renderer.render(image, density, counts, time_s, boxes, method)
                vf = av.VideoFrame.from_ndarray(out, format="bgr24")
                for packet in self._stream.encode(vf):
                    self._container.mux(packet)
                self.frames += 1
            except Exception as e:  # noqa: BLE001 - a sink never stops counting
                self.error = str(e) or type(e).__name__
                log.error("annotated video %s: encoding failed: %s", self.path, self.error)

    def close(self) -> None:
        """Finish encoding and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_END)
        self._thread.join()
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        except Exception as e:  # noqa: BLE001
            log.error("annotated video %s: flushing failed: %s", self.path, e)
        finally:
            self._container.close()
        log.debug("wrote %d frames to %s (%s)", self.frames, self.path, self.codec)
