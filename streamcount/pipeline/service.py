"""The live service behind ``streamcount run``: cameras -> readers -> scheduler -> aggregators
-> event bus -> sinks.

Per camera: a :class:`~streamcount.sources.reader.CameraReader` thread fills a
:class:`~streamcount.sources.slots.FrameSlot` (latest-frame-wins for cameras, a blocking FIFO
for files, which are replayed in real time), a
:class:`~streamcount.sources.health.StreamHealth` gates the counts, and one
:class:`~streamcount.pipeline.aggregate.RegionAggregator` per region (plus ``all``) smooths
them and evaluates alert rules. One :class:`~streamcount.pipeline.scheduler.Scheduler` thread
owns the backend for all cameras.

Events (:class:`CountUpdate`, :class:`AlertEvent`, :class:`StatusEvent`, periodic
:class:`StatsEvent`) go to an :class:`~streamcount.pipeline.bus.EventBus` with the MQTT sink
(if configured), the JSONL sink (``sinks.jsonl``) and the metrics/HTTP server (``http``);
per-frame :class:`RegionCounts` go to a second bus feeding the per-camera CSV files
(``sinks.csv_dir`` + ``csv: true``).

Each camera is counted by its ``counting`` method (``auto``: detection where people are few and
clearly visible, density elsewhere) with its automatic ``scale``
(:class:`~streamcount.pipeline.counting.CameraCounting`, kept across reloads that leave those
settings alone); its count updates say which ``method`` counted them, and its status shows the
method and the scale in use. An explicit camera ``max_side`` turns the automatic scale off.

While a camera is unhealthy (offline, stalled, black, uniform, frozen) its regions are updated
with ``raw=None`` and the reason, so counts read ``unknown`` and no alert rule is evaluated.

:meth:`Service.reload` applies a new config without disturbing unchanged cameras: a camera
whose source settings changed is restarted, one whose regions/smoothing/health/fps changed
keeps its reader and only gets a new pipeline, added and removed cameras start and stop.
Changes to ``inference``, ``mqtt``, ``http`` or ``sinks`` need a restart and are reported.

With a :class:`~streamcount.sharding.Shard` the service runs only the enabled cameras that shard
owns (rendezvous hashing of the camera names), at start and at every reload; its MQTT
availability, stats, client id and spool are per replica, and ``/metrics`` shows its cameras.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcount.config.redact import redact
from streamcount.config.schema import CameraConfig, ServiceConfig
from streamcount.engine.base import Backend
from streamcount.pipeline.aggregate import RegionAggregator
from streamcount.pipeline.counting import CameraCounting
from streamcount.pipeline.alerts import EventIds
from streamcount.pipeline.bus import EventBus
from streamcount.messages import (CountState, CountUpdate, Frame, RegionCounts,
                                           StatsEvent, StatusEvent, region_state)
from streamcount.regions import ALL, Region, regions_from_specs
from streamcount.pipeline.scheduler import Scheduler
from streamcount.sharding import Shard
from streamcount.sinks.base import Sink
from streamcount.sources.health import StreamHealth
from streamcount.sources.reader import CameraReader, ReaderSettings, SourceKind, SourceState
from streamcount.sources.slots import FifoSlot, FrameSlot, LatestSlot

log = logging.getLogger(__name__)

#: how often the service checks for stalls and refreshes stats (s)
TICK_S = 1.0
#: a live source converts at most this many frames per inference interval
LIVE_EMIT_FACTOR = 4.0
#: frames a file camera's FIFO holds ahead of the scheduler
FILE_QUEUE = 2
#: frames a live camera's slot holds
LIVE_SLOT = 1
#: config sections a reload cannot change
RESTART_SECTIONS = ("inference", "mqtt", "homeassistant", "http", "sinks")


def create_backend(config: ServiceConfig) -> Backend:
    """The one inference backend of ``config.inference``, shared by all cameras."""
    from streamcount.engine import factory
    from streamcount.models.weights import resolve_model

    inf = config.inference
    return factory.create_backend(inf.backend, resolve_model(inf.model), threads=inf.threads)


def reader_settings(cam: CameraConfig, config: ServiceConfig) -> ReaderSettings:
    """The reader settings of a camera (effective health and reconnect sections applied)."""
    health = config.camera_health(cam)
    rec = config.camera_reconnect(cam)
    live = cam.kind != "file"
    return ReaderSettings(
        camera=cam.name, url=cam.source, loop=cam.loop, realtime=True,
        emit_fps=cam.fps * LIVE_EMIT_FACTOR if live else cam.fps,
        rtsp_transport=cam.rtsp_transport, stall_s=health.stall_s,
        open_timeout_s=max(10.0, health.stall_s), reconnect_initial_s=rec.initial_s,
        reconnect_max_s=rec.max_s, reconnect_jitter=rec.jitter)


def _reader_key(cam: CameraConfig, config: ServiceConfig) -> ReaderSettings:
    s = reader_settings(cam, config)
    return ReaderSettings(**{**s.__dict__, "emit_fps": None})  # fps changes keep the reader


def _pipeline_key(cam: CameraConfig, config: ServiceConfig) -> tuple[Any, ...]:
    return (cam.model_dump(), config.camera_smoothing(cam).model_dump(),
            config.camera_health(cam).model_dump(), config.camera_max_side(cam))


@dataclass
class _Pipeline:
    """The replaceable per-camera processing: regions, health gate, aggregators."""

    cfg: CameraConfig
    regions: list[Region]
    health: StreamHealth
    aggregators: dict[str, RegionAggregator]
    unknown_reason: str | None = None  # the reason last published as unknown


@dataclass
class _Camera:
    """One running camera."""

    name: str
    reader: CameraReader
    slot: FrameSlot
    pipe: _Pipeline
    reader_key: ReaderSettings
    pipeline_key: tuple[Any, ...]
    counting: CameraCounting | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    updates: dict[str, CountUpdate] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    @property
    def is_file(self) -> bool:
        return self.reader.kind is SourceKind.FILE


@dataclass(frozen=True)
class ReloadResult:
    """What :meth:`Service.reload` did."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    reconfigured: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()  # sections whose changes were not applied


class Service:
    """The live counting service.

    Args:
        config: the validated service config.
        config_path: where it came from (shown in the state API).
        backend: an inference backend to use instead of creating one from
            ``config.inference`` (tests, benchmarks).
        extra_sinks: more event sinks (tests, benchmarks).
        shard: run only the cameras this replica owns (None: all enabled cameras).

    Example:
        >>> svc = Service(load_config("service.yaml"))  # doctest: +SKIP
        >>> svc.start(); ...; svc.stop()
    """

    def __init__(self, config: ServiceConfig, config_path: str | Path | None = None, *,
                 backend: Backend | None = None, extra_sinks: tuple[Sink, ...] = (),
                 shard: Shard | None = None) -> None:
        self.config = config
        self.shard = shard
        self.config_path = str(config_path) if config_path else None
        self._backend = backend
        self._extra_sinks = extra_sinks
        self._cameras: dict[str, _Camera] = {}
        self._cams_lock = threading.RLock()
        self._ids = EventIds()
        self.bus = EventBus()
        self._frame_bus = EventBus()
        self.metrics: Any = None
        self.console_state: Any = None  # the operator console's frames, history, alerts
        self._reload_lock = threading.Lock()
        self.mqtt: Any = None
        self.csv: Any = None
        self.scheduler: Scheduler | None = None
        self._stop = threading.Event()
        self._tick_thread: threading.Thread | None = None
        self._running = False
        self._started_mono: float | None = None
        self._last_stats = 0.0
        self.reloads = 0

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def http_port(self) -> int | None:
        """The port the metrics/health server is bound to (None when disabled)."""
        return None if self.metrics is None else self.metrics.port

    def owned_cameras(self, config: ServiceConfig) -> list[CameraConfig]:
        """The enabled cameras of ``config`` that this replica runs (all without a shard)."""
        cams = list(config.enabled_cameras())
        if self.shard is None:
            return cams
        owned = set(self.shard.select(c.name for c in cams))
        return [c for c in cams if c.name in owned]

    def start(self) -> None:
        """Create the backend and sinks, start the scheduler and every enabled camera.

        Raises:
            UserError: the model or backend cannot be loaded, a sink cannot start (spool
                directory unusable, HTTP port in use).
        """
        if self._running:
            raise RuntimeError("service already started")
        backend = self._backend or create_backend(self.config)
        self._backend = backend
        self.scheduler = Scheduler(
            backend, self._on_counts, on_unhealthy=self._on_unhealthy,
            on_batch=self._on_batch, on_density=self._on_density,
            max_batch=self.config.inference.max_batch,
            max_wait_ms=self.config.inference.max_wait_ms,
            detector_threads=self.config.inference.threads)
        self._running = True
        self._started_mono = time.monotonic()
        try:
            self._start_sinks()
            self.scheduler.start()
            for cam in self.owned_cameras(self.config):
                self._add_camera(cam, self.config)
        except BaseException:
            self.stop()
            raise
        self._tick_thread = threading.Thread(target=self._tick_loop, name="service-tick",
                                             daemon=True)
        self._tick_thread.start()
        log.info("service started: %d camera(s), backend %s%s", len(self._cameras),
                 backend.describe(), "" if self.shard is None else f", shard {self.shard}")

    def _start_sinks(self) -> None:
        from streamcount.errors import ConfigError

        cfg = self.config
        if cfg.http.enabled:
            from streamcount.console.auth import HttpAuth
            from streamcount.sinks.metrics import MetricsServer
            console = None
            if cfg.http.console:
                from streamcount.console.routes import Console
                from streamcount.console.state import ConsoleState
                self.console_state = ConsoleState()
                self.bus.add_sink(self.console_state)
                console = Console(self, self.console_state, cfg.http.config_edit)
            auth = HttpAuth(cfg.http.token, cfg.http.username, cfg.http.password)
            if not auth.enabled and cfg.http.host not in ("127.0.0.1", "localhost", "::1"):
                log.warning("HTTP on %s:%d without authentication: anyone who can reach it "
                            "sees the cameras and may edit regions (set http.token or "
                            "http.username/password)", cfg.http.host, cfg.http.port)
            self.metrics = MetricsServer(self.snapshot, cfg.http.host, cfg.http.port,
                                         auth=auth, console=console,
                                         health_public=cfg.http.health_public)
            try:
                self.metrics.start()
            except OSError as e:
                raise ConfigError(f"cannot listen on {cfg.http.host}:{cfg.http.port} "
                                  f"({e.strerror or e})", key="http.port") from None
            self.bus.add_sink(self.metrics)
        if cfg.mqtt is not None:
            from streamcount.sinks.mqtt import MqttSink
            ha = cfg.homeassistant
            self.mqtt = MqttSink(cfg.mqtt, cameras=[c.name for c in self.owned_cameras(cfg)],
                                 replica=None if self.shard is None else str(self.shard.index),
                                 discovery=self._discovery(cfg),
                                 birth_topic=ha.effective_birth_topic if ha else None)
            self.bus.add_sink(self.mqtt)
        if cfg.sinks.jsonl:
            from streamcount.sinks.jsonl import JsonlSink
            self.bus.add_sink(JsonlSink(cfg.sinks.jsonl))
        for sink in self._extra_sinks:
            self.bus.add_sink(sink)
        if cfg.sinks.csv_dir:
            from streamcount.sinks.csvlive import LiveCsvSink
            self.csv = LiveCsvSink(cfg.sinks.csv_dir)
            self._frame_bus.add_sink(self.csv)

    def _discovery(self, config: ServiceConfig) -> dict[str, str] | None:
        """Home Assistant discovery configs of the cameras this replica runs (None when
        ``homeassistant`` is not configured)."""
        ha, mqtt_cfg = self.config.homeassistant, self.config.mqtt
        if ha is None or mqtt_cfg is None:
            return None
        from streamcount.sinks.homeassistant import discovery_configs
        return discovery_configs(self.owned_cameras(config), mqtt_cfg.topic_prefix, ha)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop: finish the batch in flight, stop the readers (each camera's status and counts
        go offline/unknown), then let every sink drain and close."""
        if not self._running:
            return
        log.info("service stopping")
        self._running = False
        self._stop.set()
        if self._tick_thread is not None:
            self._tick_thread.join(5.0)
        if self.scheduler is not None:
            self.scheduler.stop(timeout)
        with self._cams_lock:
            cams = list(self._cameras.values())
        for cam in cams:  # each publishes STOPPED at once; its regions go unknown
            cam.reader.stop(timeout=0, reason="service stopping")
        deadline = time.monotonic() + timeout
        for cam in cams:  # then wait for the threads together (a hung read ends by stall_s)
            cam.reader.join(max(0.0, deadline - time.monotonic()))
        self._publish_stats()
        self._frame_bus.close(timeout)
        self.bus.close(timeout)
        log.info("service stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` was called (True) or ``timeout`` passed (False)."""
        return self._stop.wait(timeout)

    # -- cameras ---------------------------------------------------------------------------------

    def _make_pipeline(self, cam: CameraConfig, config: ServiceConfig) -> _Pipeline:
        regions = regions_from_specs(cam.regions, source=f"camera '{cam.name}'")
        health = StreamHealth.from_config(config.camera_health(cam))
        aggs = {r.name: RegionAggregator(cam.name, r.name, config.region_smoothing(cam, r),
                                         r.alerts, self._ids, area_m2=r.floor_area(),
                                         los_table=r.los) for r in cam.regions}
        aggs[ALL] = RegionAggregator(cam.name, ALL, config.camera_smoothing(cam), (), self._ids)
        return _Pipeline(cam, regions, health, aggs)

    def _add_camera(self, cam: CameraConfig, config: ServiceConfig) -> None:
        assert self.scheduler is not None
        settings = reader_settings(cam, config)
        slot: FrameSlot
        if settings.kind is SourceKind.FILE:
            slot = FifoSlot(FILE_QUEUE, on_put=self.scheduler.wake)
        else:
            slot = LatestSlot(LIVE_SLOT, on_put=self.scheduler.wake)
        pipe = self._make_pipeline(cam, config)
        camera: _Camera | None = None

        def on_status(event: StatusEvent) -> None:
            # bound to this camera object: a replaced camera's late events stay its own
            if camera is not None:
                self._on_status(camera, event)

        reader = CameraReader(settings, slot, on_status=on_status)
        camera = _Camera(cam.name, reader, slot, pipe, _reader_key(cam, config),
                         _pipeline_key(cam, config))
        with self._cams_lock:
            self._cameras[cam.name] = camera
        self._schedule(camera, config)
        if self.csv is not None and cam.csv:
            self.csv.add_camera(cam.name, [*(r.name for r in pipe.regions), ALL])
        reader.start()
        log.info("camera %s: started (%s, %s fps)", cam.name, redact(cam.source), cam.fps)

    def _schedule(self, camera: _Camera, config: ServiceConfig) -> None:
        assert self.scheduler is not None
        pipe = camera.pipe
        cam = pipe.cfg
        old = camera.counting
        if old is None or (old.method, old.fixed_max_side, old.auto_scale) != (
                cam.counting, cam.max_side, cam.scale == "auto" and cam.max_side is None):
            camera.counting = CameraCounting(cam.counting, cam.scale,
                                             fixed_max_side=cam.max_side)
        self.scheduler.add_camera(
            camera.name, camera.slot, fps=cam.fps, regions=pipe.regions,
            max_side=config.camera_max_side(cam), media_clock=camera.is_file,
            health=pipe.health, counting=camera.counting, gain=cam.gain)

    def _remove_camera(self, name: str, reason: str) -> None:
        with self._cams_lock:
            camera = self._cameras.pop(name, None)
        if camera is None:
            return
        if self.scheduler is not None:
            self.scheduler.remove_camera(name)
        camera.reader.stop(reason=reason)  # publishes STOPPED; its regions go unknown
        if self.csv is not None:
            self.csv.remove_camera(name)
        if self.metrics is not None:
            self.metrics.forget_camera(name)
        if self.console_state is not None:
            self.console_state.forget_camera(name)
        log.info("camera %s: removed (%s)", name, reason)

    def _reconfigure(self, camera: _Camera, cam: CameraConfig, config: ServiceConfig) -> None:
        """New regions/smoothing/health/fps for a running camera; the reader keeps running."""
        assert self.scheduler is not None
        pipe = self._make_pipeline(cam, config)
        state = camera.reader.state
        pipe.health.set_source(state.value, camera.reader.reason)
        self.scheduler.remove_camera(camera.name)
        with camera.lock:
            camera.pipe = pipe
            camera.pipeline_key = _pipeline_key(cam, config)
            camera.updates.clear()
        camera.reader.emit_fps = reader_settings(cam, config).emit_fps
        self._schedule(camera, config)
        if self.csv is not None:
            self.csv.remove_camera(camera.name)
            if cam.csv:
                self.csv.add_camera(cam.name, [*(r.name for r in pipe.regions), ALL])
        log.info("camera %s: reconfigured (reader kept)", camera.name)

    def reload_from_file(self) -> ReloadResult:
        """Re-read the config file the service was started from and apply it: what SIGHUP
        does (``streamcount run``) and what the region editor does after saving.

        Raises:
            UserError: no config file, or it does not validate (the running config is kept).
        """
        from streamcount.config.loader import load_config
        from streamcount.errors import UserError

        if self.config_path is None:
            raise UserError("the service was not started from a config file")
        with self._reload_lock:
            return self.reload(load_config(self.config_path))

    def reload(self, new: ServiceConfig) -> ReloadResult:
        """Apply a new config: start added cameras, stop removed ones, restart cameras whose
        source settings changed, re-build the pipeline of cameras whose regions, smoothing,
        health or fps changed; leave the others alone."""
        if not self._running:
            raise RuntimeError("service is not running")
        old = self.config
        needs_restart = tuple(s for s in RESTART_SECTIONS
                              if getattr(old, s) != getattr(new, s))
        for s in needs_restart:
            log.warning("config reload: changes to '%s' need a restart; keeping the running "
                        "settings", s)
        wanted = {c.name: c for c in self.owned_cameras(new)}  # the shard rule is kept
        added, removed, restarted, reconfigured, unchanged = [], [], [], [], []
        with self._cams_lock:
            current = dict(self._cameras)
        for name in current:
            if name not in wanted:
                self._remove_camera(name, "removed from config")
                removed.append(name)
        for name, cam in wanted.items():
            camera = current.get(name)
            if camera is None:
                self._add_camera(cam, new)
                added.append(name)
            elif camera.reader_key != _reader_key(cam, new):
                self._remove_camera(name, "restarting with new settings")
                self._add_camera(cam, new)
                restarted.append(name)
            elif camera.pipeline_key != _pipeline_key(cam, new):
                self._reconfigure(camera, cam, new)
                reconfigured.append(name)
            else:
                unchanged.append(name)
        # keep the sections that were not applied, take everything else
        self.config = new.model_copy(update={s: getattr(old, s) for s in needs_restart})
        discovery = self._discovery(self.config)
        if discovery is not None and self.mqtt is not None:
            self.mqtt.set_discovery(discovery)  # removed regions and rules are cleared
        self.reloads += 1
        result = ReloadResult(tuple(added), tuple(removed), tuple(restarted),
                              tuple(reconfigured), tuple(unchanged), needs_restart)
        log.info("config reloaded: added %s, removed %s, restarted %s, reconfigured %s, "
                 "unchanged %s", list(added), list(removed), list(restarted),
                 list(reconfigured), list(unchanged))
        return result

    # -- event handling --------------------------------------------------------------------------

    def _camera(self, name: str) -> _Camera | None:
        with self._cams_lock:
            return self._cameras.get(name)

    def _publish_update(self, camera: _Camera, raw: float | None, ts: float,
                        reason: str | None, region: str, agg: RegionAggregator,
                        method: str | None = None) -> None:
        update, events = agg.update(raw, ts, reason, method)
        camera.updates[region] = update
        self.bus.publish(update)
        if agg.alerts.levels:  # a region without rules has no alerts to report
            for ev in events:
                self.bus.publish(ev)

    def _mark_unknown(self, camera: _Camera, reason: str, ts: float, *,
                      force: bool = False) -> None:
        """Publish every region of ``camera`` as unknown (once per reason unless ``force``)."""
        with camera.lock:
            pipe = camera.pipe
            if not force and pipe.unknown_reason == reason:
                return
            pipe.unknown_reason = reason
            for region, agg in pipe.aggregators.items():
                self._publish_update(camera, None, ts, reason, region, agg)

    def _on_status(self, camera: _Camera, event: StatusEvent) -> None:
        """A reader state transition (reader thread)."""
        camera.pipe.health.set_source(event.state, event.reason)
        self.bus.publish(event)
        if event.state != SourceState.STREAMING.value:
            reason = camera.pipe.health.reason or f"offline ({event.state})"
            self._mark_unknown(camera, reason, event.ts)

    def _on_counts(self, counts: RegionCounts, frame: Frame) -> None:
        """Counts of a processed frame (scheduler thread)."""
        camera = self._camera(counts.camera)
        if camera is None:
            return
        reason = camera.pipe.health.reason
        if reason is not None:  # went offline/stalled while the frame was in flight
            self._mark_unknown(camera, reason, frame.wall_ts)
            return
        with camera.lock:
            pipe = camera.pipe
            pipe.unknown_reason = None
            for region, agg in pipe.aggregators.items():
                raw = counts.counts.get(region)
                self._publish_update(camera, raw, frame.wall_ts,
                                     None if raw is not None else "region not counted",
                                     region, agg, counts.method)
        self._frame_bus.publish(counts)

    def _on_unhealthy(self, name: str, frame: Frame, reason: str) -> None:
        """A sampled frame failed its health check (scheduler thread)."""
        camera = self._camera(name)
        if camera is not None:
            self._mark_unknown(camera, reason, frame.wall_ts, force=True)

    def _on_density(self, name: str, frame: Frame, density: Any, boxes: Any = None) -> None:
        """The latest processed frame, density map and people counted by detection of a
        camera (scheduler thread)."""
        if self.console_state is not None:
            self.console_state.set_frame(name, frame, density, boxes)

    def _on_batch(self, latency_s: float, size: int) -> None:
        if self.metrics is not None:
            self.metrics.observe_batch(latency_s, size)

    # -- periodic work ---------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self._tick()
            except Exception:
                log.exception("service tick failed")

    def _tick(self) -> None:
        now = time.time()
        with self._cams_lock:
            cams = list(self._cameras.values())
        for camera in cams:
            health = camera.pipe.health
            if camera.is_file and len(camera.slot):
                continue  # a file reader waiting for us to take its frames is not stalled
            if health.check_stall(camera.reader.last_frame_age()):
                self._mark_unknown(camera, health.reason or "stalled", now)
        interval = self.config.mqtt.stats_interval_s if self.config.mqtt else 30.0
        if time.monotonic() - self._last_stats >= interval:
            self._publish_stats()

    def _publish_stats(self) -> None:
        self._last_stats = time.monotonic()
        snap = self.snapshot()
        keys = ("state", "health", "decode_fps", "processed_fps", "dropped", "reconnects",
                "last_frame_age_s", "frame_age_p50_s", "method")
        cameras = {n: {**{k: c.get(k) for k in keys},
                       "scale": (c.get("scale") or {}).get("scale")}
                   for n, c in snap["cameras"].items()}
        inf = snap.get("inference", {})
        service = {k: v for k, v in inf.items() if isinstance(v, (int, float, str)) or v is None}
        if self.shard is not None:
            service["shard"] = str(self.shard)
        self.bus.publish(StatsEvent(ts=time.time(), uptime_s=snap.get("uptime_s") or 0.0,
                                    cameras=cameras, service=service))

    # -- state -----------------------------------------------------------------------------------

    def camera_names(self) -> list[str]:
        """Names of the running cameras."""
        with self._cams_lock:
            return list(self._cameras)

    def reader(self, name: str) -> CameraReader | None:
        """The reader of a running camera (tests, benchmarks)."""
        camera = self._camera(name)
        return None if camera is None else camera.reader

    def snapshot(self) -> dict[str, Any]:
        """Everything the state API and metrics show: service, inference and per-camera
        figures (JSON-compatible)."""
        with self._cams_lock:
            cams = list(self._cameras.values())
        out: dict[str, Any] = {
            "running": self._running,
            "config": self.config_path,
            "reloads": self.reloads,
            "shard": None if self.shard is None else str(self.shard),
            "uptime_s": (None if self._started_mono is None
                         else round(time.monotonic() - self._started_mono, 3)),
            "cameras": {},
        }
        if self.scheduler is not None and self._backend is not None:
            out["inference"] = {**{k: v for k, v in self._backend.describe().items()},
                                "model": self._backend.card.name,
                                **self.scheduler.latency_stats()}
        for camera in cams:
            r = camera.reader.stats()
            f = self.scheduler.feed_stats(camera.name) if self.scheduler else None
            with camera.lock:
                regions = {k: region_state(u) for k, u in camera.updates.items()}
            out["cameras"][camera.name] = {
                "source": redact(camera.reader.settings.url),
                "kind": camera.reader.kind.value,
                "state": r.state.value, "reason": r.reason,
                "health": camera.pipe.health.reason,
                "fps": camera.pipe.cfg.fps,
                "decoded": r.decoded, "emitted": r.emitted, "dropped": r.dropped,
                "reconnects": r.reconnects, "reconnect_attempts": r.reconnect_attempts,
                "loops": r.loops, "decode_fps": round(r.decode_fps, 3),
                "source_fps": r.source_fps, "last_frame_age_s": r.last_frame_age_s,
                "width": r.width, "height": r.height,
                "processed": f.processed if f else 0,
                "processed_fps": round(f.processed_fps, 3) if f else 0.0,
                "skipped": f.skipped if f else 0,
                "unhealthy_frames": f.unhealthy if f else 0,
                "frame_age_p50_s": f.age_p50_s if f else None,
                "frame_age_p95_s": f.age_p95_s if f else None,
                "frame_age_max_s": f.age_max_s if f else None,
                "started_at": camera.started_at,
                **(camera.counting.state() if camera.counting is not None else {}),
                "regions": regions,
            }
        return out

    def region_states(self, camera: str) -> dict[str, CountState]:
        """The last published count state of each region of a camera."""
        cam = self._camera(camera)
        if cam is None:
            return {}
        with cam.lock:
            return {k: u.state for k, u in cam.updates.items()}
