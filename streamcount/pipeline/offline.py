"""The offline counting driver behind ``streamcount count``: a file, an image, a folder of
images or a stream URL through the same stages as the live service, lossless and as fast as
the machine allows.

Stages: the media reader thread decodes and resizes frames to the model input size (so decoding
overlaps inference) -> batches of same-size frames, stacked (and resized for an automatic
scale) on a preparation thread -> an inference thread (``Backend.infer`` and the person
detector, a batch or two ahead) -> on the calling thread the counting rule, per-size :class:`RegionCounter` and
the sinks (CSV, summary, optional annotated MP4 on its own thread, plot). The backends run
in throughput mode (OpenVINO: one request per frame of a batch, all in flight). Each stage's
busy time is recorded in ``summary.json`` (``profile``), with the start-up phases
(``startup``, :mod:`streamcount.startup`) and ``auto``'s parity check (``auto``).

int8 calibration is the model's (:mod:`streamcount.pipeline.backend_choice`): a new input only
gets the fp32 parity check that ``auto`` needs, on a few of its first frames.

Ctrl-C stops after the batch in flight; ``counts.csv`` and ``summary.json`` then describe
exactly the frames processed (``"interrupted": true``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

from streamcount import __version__, startup
from streamcount.detect.boxes import Detections
from streamcount.detect.counting import COUNTING_METHODS, MethodCounter
from streamcount.detect.scale import ScaleChoice, probe_scale
from streamcount.engine import factory
from streamcount.engine.base import Backend
from streamcount.engine.factory import BuildSettings
from streamcount.engine.preprocess import DEFAULT_MAX_SIDE, plan_input_size, prepare_frame
from streamcount.engine.quantize import CALIBRATION_POLICIES
from streamcount.errors import BackendError, InputError, ModelError
from streamcount.messages import Frame, RegionCounts
from streamcount.models.card import ModelCard
from streamcount.models.lazy import load_lazy
from streamcount.models.weights import resolve_model
from streamcount.pipeline.backend_choice import (  # noqa: F401 - re-exported
    AUTO_FLOAT_FALLBACKS, AUTO_MIN_COUNT, CALIBRATION_FRAMES, CALIBRATION_STRIDE,
    MAX_AUTO_DEVIATION, BackendChoice, auto_deviation, check_auto, choose_counting_backend,
    create_counting_backend, create_density_backend, create_reference)
from streamcount.regions import Region, RegionCounter, load_regions
from streamcount.pipeline.batches import Batch, Inferred, batches, calibration_set, chain
from streamcount.pipeline.stages import StageTimes, threaded_map
from streamcount.sinks.csvsink import CsvSink
from streamcount.sinks.plot import CountsPlot
from streamcount.sinks.summary import SummaryBuilder, write_json_atomic
from streamcount.sinks.video import AnnotatedVideoSink
from streamcount.sources.media import MediaKind, MediaSource, open_media

if TYPE_CHECKING:
    from torch import nn

    from streamcount.models.lazy import LazyNet

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = "streamcount-out"
#: frames per ``infer`` call
DEFAULT_BATCH = 4
#: batches the inference thread may run ahead of counting and writing
INFER_AHEAD = 2

CSV_NAME = "counts.csv"
SUMMARY_NAME = "summary.json"
VIDEO_NAME = "annotated.mp4"
PLOT_NAME = "counts.png"


class _GracefulInterrupt:
    """While active (main thread only), the first SIGINT sets ``stop`` instead of raising
    KeyboardInterrupt; a second one raises as usual."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        log.warning("interrupted: finishing the current batch and writing the outputs "
                    "(Ctrl-C again to abort)")
        self.stop.set()

    def __enter__(self) -> _GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


Model = Path | tuple["nn.Module | LazyNet", ModelCard]


def create_backend(name: str, model: Model, *, threads: int | None = None,
                   calibration: Sequence[np.ndarray] = ()) -> Backend:
    """The inference backend ``name`` for a model file or a loaded ``(net, card)`` (see
    :mod:`streamcount.engine.factory`)."""
    return factory.create_backend(name, model, threads=threads,
                                  calibration_frames=list(calibration))


def _needs_calibration(name: str) -> bool:
    return name == "auto" or name.endswith("int8")


def _regions_of(regions: str | Path | Sequence[Region] | None) -> tuple[list[Region], str | None]:
    if regions is None:
        return [], None
    if isinstance(regions, (str, Path)):
        return load_regions(regions), str(regions)
    return list(regions), None


def count_input(input: str | Path, *, model: str | None = None, backend: str = "auto",
                regions: str | Path | Sequence[Region] | None = None, fps: float | None = None,
                max_side: int | None = DEFAULT_MAX_SIDE, out_dir: str | Path = DEFAULT_OUT_DIR,
                annotate: bool = False, plot: bool = False, batch: int = DEFAULT_BATCH,
                threads: int | None = None, progress: bool = True,
                backend_instance: Backend | None = None,
                counting: str | None = None, scale: str = "off",
                calibration: str = "model", throughput: bool = True) -> dict[str, Any]:
    """Count people per region in a video, image, folder of images or stream URL.

    Writes ``out_dir/counts.csv`` and ``out_dir/summary.json`` (and ``annotated.mp4``,
    ``counts.png`` when asked) and returns the summary.

    Args:
        input: video or image path, a folder of images (natural name order) or a stream URL.
        model: ``--model`` reference (file, name or architecture); None: the default model.
        backend: backend name for :func:`create_backend` (``auto`` picks the fastest).
        regions: a regions file, or :class:`Region` objects; None counts the whole frame only.
        fps: sample this many frames per second of media time (None: every frame).
        max_side: longest model-input side (frames are downscaled, never upscaled).
        out_dir: output folder (created).
        annotate: write the annotated MP4.
        plot: write the counts-over-time PNG.
        batch: frames per inference call.
        threads: inference threads (None: the backend's default).
        progress: show a progress bar when stderr is a terminal.
        backend_instance: an already created backend (its card must match ``model``), e.g.
            to reuse one across inputs; ``backend`` is then ignored.
        counting: ``auto`` (the hybrid rule of :mod:`streamcount.detect.hybrid`: detection
            where people are few and clearly visible, density elsewhere), ``density`` or
            ``detect``; each CSV row then says how it was counted (``method`` column) and the
            summary has a ``counting`` section. None (the library default): density, without
            the ``method`` column. ``streamcount count`` passes ``auto`` unless told otherwise.
        scale: ``auto``: for a video or stream counted with ``counting`` ``auto`` or
            ``density``, scale the density model's input so that people are about as tall as
            the model counts best, from the person heights the detector finds on the first
            frames where it explains the density (:mod:`streamcount.detect.scale`); a camera
            whose people are too large for that is counted by detection. ``off``: ``max_side``
            only.
        calibration: int8 calibration policy: ``model`` (reuse the model's cached calibration
            and check fp32 parity on a few frames of this input; calibrate on this input only
            when the model has none yet) or ``clip`` (calibrate on this input's frames).
        throughput: build the backends for throughput (several inferences in flight) rather
            than for the latency of one call.

    Raises:
        UserError: bad input, regions file, model or backend (one-line message).
    """
    t_start = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if backend_instance is None and backend not in factory.backend_names():
        raise BackendError(f"unknown backend '{backend}' "
                           f"(known: {', '.join(factory.backend_names())})")
    if calibration not in CALIBRATION_POLICIES:
        raise InputError(f"unknown calibration policy '{calibration}' "
                         f"(choose from {', '.join(CALIBRATION_POLICIES)})")
    region_list, regions_file = _regions_of(regions)
    loaded: tuple[nn.Module | LazyNet, ModelCard] | None = None
    if backend_instance is not None:
        model_path, card = None, backend_instance.card
    else:
        model_path = resolve_model(model)
        loaded = load_lazy(model_path)  # the card now; the tensors only if an export is due
        card = loaded[1]
    multiple = card.input_multiple
    if counting is not None and counting not in COUNTING_METHODS:
        raise InputError(f"unknown counting method '{counting}' "
                         f"(choose from {', '.join(COUNTING_METHODS)})")
    if card.task != "density":
        raise ModelError(f"model '{card.name}' is a {card.task} model; --model takes a density "
                         f"model (use --counting detect to count by detection)")
    if scale not in ("auto", "off"):
        raise InputError(f"unknown scale policy '{scale}' (choose from auto, off)")
    settings = BuildSettings(throughput=throughput, calibration=calibration)
    counter = MethodCounter(counting, threads=threads, settings=settings) if counting else None
    startup.mark("model load (card)")

    times = StageTimes()

    def to_model_input(image: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = prepare_frame(image, plan_input_size(image.shape[0], image.shape[1],
                                                   max_side, multiple))
        times.add("resize to model input (reader thread)", time.perf_counter() - t0)
        return out

    out = Path(out_dir)
    source = open_media(input, fps=fps, queue_size=max(8, 3 * batch), transform=to_model_input)
    info = source.info
    names = (*[r.name for r in region_list], "all")
    stop = threading.Event()
    run = _Run(source, names, region_list, card, out, annotate=annotate, plot=plot,
               counter=counter, times=times)
    run.model_path = model_path
    interrupted = False
    error: str | None = None
    try:
        with source, _GracefulInterrupt(stop):
            frames = iter(source)
            head: list[Frame] = []
            be = backend_instance
            auto_scale = (scale == "auto" and counting in ("auto", "density")
                          and info.kind in (MediaKind.VIDEO, MediaKind.STREAM))
            if be is None and _needs_calibration(backend) or auto_scale:
                for frame in frames:
                    head.append(frame)
                    if len(head) >= CALIBRATION_FRAMES * CALIBRATION_STRIDE:
                        break
                startup.mark("decode first frames")
            if counter is not None and counter.detector is not None:  # created now
                startup.mark("detector load")
            reference = _Lazy(lambda: create_reference(loaded, threads, settings)
                              if loaded is not None else None)
            label = _source_label(info, head)
            if be is None and (calibration == "model" or not auto_scale):
                # the model's own calibration (cached, or made once on these frames at the
                # model input size): available before the scale is known, so it probes too
                assert loaded is not None
                be = create_density_backend(
                    backend, loaded, threads=threads,
                    calibration=calibration_set(head[::CALIBRATION_STRIDE]),
                    settings=replace(settings, calibration_source=label))
                startup.mark("density backend")
                probe = be
            else:
                probe = be or reference()
            if auto_scale and head:
                run.choose_scale(head, probe, threads, multiple)
                startup.mark(f"scale probe ({probe.name} + detector)")
            if be is None:  # --calibration clip: calibrate on the frames at the scaled size
                assert loaded is not None
                be = create_density_backend(
                    backend, loaded, threads=threads,
                    calibration=[run.density_input(f)
                                 for f in calibration_set(head[::CALIBRATION_STRIDE])],
                    settings=replace(settings, calibration_source=label))
                startup.mark("density backend (calibrated on this input)")
            if backend_instance is None:
                assert loaded is not None
                run.auto = check_auto(
                    be, backend, loaded, threads=threads,
                    frames=[run.density_input(f)
                            for f in calibration_set(head[::CALIBRATION_STRIDE])],
                    settings=settings, reference=reference)
                be = run.auto.backend
                startup.mark("parity check (fp32)")
            run.backend = be
            run.t_infer_start = time.perf_counter()
            bar = _progress_bar(progress, source.expected_frames, info.name)
            try:
                prepared = threaded_map(run.prepare,
                                        batches(chain(head, frames, times), batch, stop),
                                        depth=INFER_AHEAD, name="prepare")
                inferred = threaded_map(run.infer, prepared, depth=INFER_AHEAD,
                                        name="inference")
                # on an error (or Ctrl-C twice) the stage threads stop at once, last stage first
                with contextlib.closing(prepared), contextlib.closing(inferred):
                    for b, result in inferred:
                        run.emit(b, result)
                        if run.first_frame:
                            run.first_frame = False
                            startup.mark("first frame")
                            startup.log_once()
                        if bar is not None:
                            with times.time("progress bar"):
                                bar.update(len(b.frames))
            finally:
                if bar is not None:
                    bar.close()
            interrupted = stop.is_set()
    except KeyboardInterrupt:
        interrupted = True
        raise
    except BaseException as e:
        error = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise
    finally:
        summary = run.finish(
            interrupted=interrupted, error=error, started_at=started_at,
            elapsed_s=time.perf_counter() - t_start, fps=fps, max_side=max_side,
            regions_file=regions_file, batch=batch)
    return summary


class _Lazy:
    """A value computed on the first call and reused."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._value: Any = None
        self._made = False

    def __call__(self) -> Any:
        if not self._made:
            self._value = self._make()
            self._made = True
        return self._value


def _source_label(info: Any, head: Sequence[Frame]) -> str:
    """How calibration frames taken from this input are described in the int8 record."""
    return (f"{info.name}: every {CALIBRATION_STRIDE}th of its first {len(head)} frames "
            f"(the first input counted with this model)")


def _progress_bar(enabled: bool, total: int | None, name: str) -> Any:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=name[:30], smoothing=0.1,
                file=sys.stderr)


class _Run:
    """State of one counting run: counters per input size, sinks, statistics."""

    def __init__(self, source: MediaSource, names: Sequence[str], regions: Sequence[Region],
                 card: ModelCard, out: Path, *, annotate: bool, plot: bool,
                 counter: MethodCounter | None = None, times: StageTimes | None = None) -> None:
        self.source = source
        self.names = tuple(names)
        self.regions = tuple(regions)
        self.card = card
        self.out = out
        self.backend: Backend | None = None
        self.auto: BackendChoice | None = None
        self.times = times or StageTimes()
        self.first_frame = True
        self.model_path: Path | None = None
        self.t_infer_start: float | None = None
        self.input_sizes: dict[tuple[int, int], int] = {}
        self._counters: dict[tuple[tuple[int, int], tuple[int, int]], RegionCounter] = {}
        self._annotate = annotate
        self._video: AnnotatedVideoSink | None = None
        self.method_counter = counter
        self.methods: dict[str, int] = {}
        self.scale: ScaleChoice | None = None
        #: the density model's input size when an automatic scale chose one
        self.density_size: tuple[int, int] | None = None
        out.mkdir(parents=True, exist_ok=True)
        with_file = source.info.kind is MediaKind.FOLDER
        self.csv = CsvSink(out / CSV_NAME, self.names, with_file=with_file,
                           with_method=counter is not None)
        self.summary = SummaryBuilder(self.names)
        self.plot = CountsPlot(out / PLOT_NAME, self.names, title=source.info.name) if plot else None

    def density_input(self, image: np.ndarray) -> np.ndarray:
        """``image`` as the density model sees it (smaller after an automatic scale)."""
        size = self.density_size
        return image if size is None or image.shape[:2] == size else prepare_frame(image, size)

    def choose_scale(self, head: list[Frame], density: Backend | None,
                     threads: int | None, multiple: int) -> None:
        """Probe the camera's scale on ``head`` with the fp32 ``density`` backend (see
        :mod:`streamcount.detect.scale`): the density model then sees frames at
        :attr:`density_size` (the detector keeps the full model-input frames); may hand the
        camera to detection."""
        counter = self.method_counter
        assert counter is not None and density is not None
        probe = density
        detector = counter.detector or MethodCounter(
            "detect", threads=threads, settings=counter.settings).detector
        assert detector is not None
        self.scale = choice = probe_scale([f.image for f in head[::CALIBRATION_STRIDE]], probe,
                                          detector, counter.rule)
        if choice.detect_only and counter.method == "auto":
            log.warning("people here are about %.0f px tall: too large for the density model; "
                        "counting by detection", choice.person_height)
            self.method_counter = MethodCounter("detect", detector, counter.rule)
            return
        h, w = head[0].image.shape[:2]
        size = plan_input_size(h, w, choice.max_side(h, w), multiple)
        if size != (h, w):
            log.info("auto scale: density model input %dx%d instead of %dx%d (people %.0f px)",
                     size[1], size[0], w, h, choice.person_height)
            self.density_size = size

    def counter(self, size: tuple[int, int], frame_hw: tuple[int, int]) -> RegionCounter:
        c = self._counters.get((frame_hw, size))
        if c is None:
            c = self._counters[(frame_hw, size)] = RegionCounter(
                self.regions, size, self.card.output_stride, frame_hw)
        return c

    def prepare(self, batch: Batch) -> tuple[Batch, tuple[int, int], np.ndarray]:
        """The density model's input for a batch (on the preparation thread): the frames
        stacked, resized first to the automatic scale's size when one was chosen."""
        if self.density_size is None or self.density_size == batch.size:
            with self.times.time("batch assembly"):
                return batch, batch.size, batch.array()
        with self.times.time("resize to density input"):
            return batch, self.density_size, np.stack([self.density_input(f.image)
                                                       for f in batch.frames])

    def infer(self, prepared: tuple[Batch, tuple[int, int], np.ndarray]
              ) -> tuple[Batch, Inferred]:
        """The models' part of a :meth:`prepare` d batch (on the inference thread): density
        maps and the detector's people."""
        assert self.backend is not None
        batch, size, x = prepared
        times = self.times
        with times.time("density inference"):
            densities = self.backend.infer(x)
        people: list[Detections] | None = None
        if self.method_counter is not None and self.method_counter.method != "density":
            with times.time("person detection"):
                people = self.method_counter.detect([f.image for f in batch.frames])
        return batch, Inferred(size, densities, people)

    def emit(self, batch: Batch, inferred: Inferred) -> None:
        """Count a batch from its :meth:`infer` results and write it to the sinks."""
        times = self.times
        size, densities = inferred.size, inferred.densities
        self.input_sizes[size] = self.input_sizes.get(size, 0) + len(batch.frames)
        methods: list[str | None] = [None] * len(batch.frames)
        boxes: list[np.ndarray | None] = [None] * len(batch.frames)
        maps = densities
        if self.method_counter is not None:  # detect / hybrid: count maps replace densities
            with times.time("counting rule"):
                results = self.method_counter.count([f.image for f in batch.frames], densities,
                                                    inferred.people)
                maps = np.stack([r.count_map for r in results])
            methods = [r.method for r in results]
            boxes = [r.counted.boxes for r in results]
            for m in methods:
                self.methods[m] = self.methods.get(m, 0) + 1
        for frame, density, count_map, method, people in zip(
                batch.frames, densities, maps, methods, boxes, strict=True):
            with times.time("region integration"):
                counter = self.counter(size, frame.image.shape[:2])
                counts = RegionCounts(camera=frame.camera, index=frame.index,
                                      pts_s=frame.pts_s, wall_ts=frame.wall_ts,
                                      counts=counter.count(count_map), file=frame.file,
                                      method=method)
            with times.time("csv + summary"):
                self.csv.write(counts)
                self.summary.add(counts)
            if self.plot is not None:
                with times.time("plot"):
                    self.plot.write(counts)
            if self._annotate:
                with times.time("annotated video (queueing)"):
                    self._write_video(frame, density, counts, people)

    def process(self, batch: Batch) -> None:
        """:meth:`prepare`, :meth:`infer` and :meth:`emit` one batch on this thread."""
        self.emit(*self.infer(self.prepare(batch)))

    def _write_video(self, frame: Frame, density: np.ndarray, counts: RegionCounts,
                     boxes: np.ndarray | None = None) -> None:
        if self._video is None:
            info = self.source.info
            rate = self.source.sample_fps or info.fps or 1.0  # folders: one image per second
            if info.fps and rate > info.fps:
                rate = info.fps
            h, w = frame.image.shape[:2]
            self._video = AnnotatedVideoSink(self.out / VIDEO_NAME, (h - h % 2, w - w % 2),
                                             rate, self.regions)
        self._video.write(frame.image, density, counts.counts, frame.pts_s, boxes, counts.method)

    def finish(self, *, interrupted: bool, error: str | None, started_at: str, elapsed_s: float,
               fps: float | None, max_side: int | None, regions_file: str | None,
               batch: int) -> dict[str, Any]:
        """Close the sinks and write ``summary.json`` (always, also after an error)."""
        self.csv.close()
        outputs = {"csv": str(self.out / CSV_NAME), "summary": str(self.out / SUMMARY_NAME)}
        if self._video is not None:
            self._video.close()
            outputs["video"] = str(self.out / VIDEO_NAME)
        if self.plot is not None:
            try:
                if self.plot.close() is not None:
                    outputs["plot"] = str(self.out / PLOT_NAME)
            except Exception as e:  # noqa: BLE001 - a sink never spoils the run
                log.error("plot %s failed: %s", self.plot.path, e)
        info = self.source.info
        now = time.perf_counter()
        infer_s = now - self.t_infer_start if self.t_infer_start is not None else None
        frames = self.summary.frames
        sizes = sorted(self.input_sizes, key=lambda s: -self.input_sizes[s])
        doc = self.summary.build(
            streamcount_version=__version__,
            started_at=started_at,
            input=info.input,
            kind=info.kind.value,
            source_size=[info.height, info.width] if info.width else None,
            source_fps=info.fps,
            frames_decoded=self.source.decoded,
            frames_dropped=self.source.dropped,
            model={"name": self.card.name, "arch": self.card.arch, "sha256": self.card.sha256,
                   "path": None if self.model_path is None else str(self.model_path)},
            backend=self.backend.describe() if self.backend is not None else None,
            batch=batch,
            max_side=max_side,
            input_size=list(sizes[0]) if sizes else None,
            input_sizes=[list(s) for s in sizes] if len(sizes) > 1 else None,
            fps=fps,
            regions_file=regions_file,
            elapsed_s=round(elapsed_s, 3),
            processing_s=None if infer_s is None else round(infer_s, 3),
            processing_fps=round(frames / infer_s, 3) if infer_s and frames else None,
            interrupted=interrupted,
            error=error,
            outputs=outputs,
        )
        doc["startup"] = {name: round(sec, 3) for name, sec in startup.phases()}
        doc["startup_of_which"] = {w: round(sec, 3) for w, sec in startup.CLOCK.notes().items()}
        doc["profile"] = {"frames": frames, "stages": self.times.snapshot(frames or None),
                          "note": "busy seconds per stage; stages run on the reader, preparation, "
                                  "inference and main threads at once, so they overlap"}
        if self.auto is not None:
            doc["auto"] = self.auto.describe()
        if self.method_counter is not None:
            doc["counting"] = {**self.method_counter.describe(), "methods": dict(self.methods)}
            if self.scale is not None:
                c = self.scale
                doc["counting"]["scale"] = {
                    "scale": round(c.scale, 4), "frames": c.frames, "detect_only": c.detect_only,
                    "person_height_px": None if c.person_height is None
                    else round(c.person_height, 1)}
        write_json_atomic(self.out / SUMMARY_NAME, doc)
        return doc
