"""Observability: Prometheus metrics and a small HTTP API.

:class:`MetricsServer` is an event-bus sink (it tracks region counts and alert levels
from the events it receives) and an HTTP server (``http.server.ThreadingHTTPServer`` on
``host:port``; port 0 picks a free port, see :attr:`MetricsServer.port`):

``/healthz`` (also ``/health``)
    200 with ``{"status": "ok", "cameras": {name: state}}`` while the service runs, 503 once
    it is stopping.
``/metrics``
    Prometheus text format from the server's own ``CollectorRegistry`` (never the global one):
    per camera decoded and processed fps, decoded/dropped/processed frames, last frame age,
    reconnects, state; the inference latency histogram and batch size; per region count, raw
    count and alert level.
``/api/state`` (also ``/stats``)
    JSON of everything above, from the service's snapshot.
``/``, ``/camera/<name>``, ``/api/...``
    the operator console (:mod:`streamcount.console.routes`) when one is given.

Every request must authenticate when ``auth`` has credentials
(:mod:`streamcount.console.auth`).

Camera and inference figures are pulled from a ``snapshot`` callable at scrape time, so the
hot path only records inference latencies (:meth:`MetricsServer.observe_batch`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from streamcount.console.auth import HttpAuth
from streamcount.messages import AlertEvent, CountState, CountUpdate, region_state

if TYPE_CHECKING:
    from streamcount.console.routes import Console

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]

#: inference latency buckets (seconds)
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
                   2.0, 5.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)
#: largest accepted POST body (bytes)
MAX_POST_BODY = 64 * 1024
#: reader states exported as a one-hot ``streamcount_camera_state`` gauge
CAMERA_STATES = ("connecting", "streaming", "reconnecting", "stopped", "failed")


class _SnapshotCollector(Collector):
    """Per-camera metrics generated from the service snapshot at scrape time."""

    def __init__(self, snapshot: Snapshot, regions: Callable[[], dict[str, dict[str, Any]]]
                 ) -> None:
        self._snapshot = snapshot
        self._regions = regions

    def collect(self) -> Iterator[Any]:
        try:
            snap = self._snapshot()
        except Exception:  # a scrape must not crash the server
            log.exception("metrics snapshot failed")
            snap = {}
        cams: dict[str, dict[str, Any]] = snap.get("cameras", {})
        gauges = {
            "decode_fps": GaugeMetricFamily("streamcount_camera_decoded_fps",
                                            "frames decoded per second", labels=["camera"]),
            "processed_fps": GaugeMetricFamily("streamcount_camera_processed_fps",
                                               "frames inferred per second", labels=["camera"]),
            "source_fps": GaugeMetricFamily("streamcount_camera_source_fps",
                                            "frame rate the stream declares", labels=["camera"]),
            "last_frame_age_s": GaugeMetricFamily(
                "streamcount_camera_last_frame_age_seconds",
                "seconds since the last decoded frame", labels=["camera"]),
            "frame_age_p50_s": GaugeMetricFamily(
                "streamcount_camera_frame_age_p50_seconds",
                "median age of frames when their counts were ready", labels=["camera"]),
            "frame_age_p95_s": GaugeMetricFamily(
                "streamcount_camera_frame_age_p95_seconds",
                "95th percentile age of frames when their counts were ready",
                labels=["camera"]),
        }
        counters = {
            "decoded": CounterMetricFamily("streamcount_camera_decoded_frames",
                                           "frames decoded", labels=["camera"]),
            "dropped": CounterMetricFamily("streamcount_camera_dropped_frames",
                                           "decoded frames replaced by newer ones before "
                                           "inference", labels=["camera"]),
            "processed": CounterMetricFamily("streamcount_camera_processed_frames",
                                             "frames inferred", labels=["camera"]),
            "unhealthy_frames": CounterMetricFamily(
                "streamcount_camera_unhealthy_frames",
                "sampled frames skipped as black, uniform or frozen", labels=["camera"]),
            "reconnects": CounterMetricFamily("streamcount_camera_reconnects",
                                              "successful reconnects", labels=["camera"]),
            "reconnect_attempts": CounterMetricFamily(
                "streamcount_camera_reconnect_attempts", "reconnect attempts",
                labels=["camera"]),
        }
        state = GaugeMetricFamily("streamcount_camera_state", "reader state (one-hot)",
                                  labels=["camera", "state"])
        healthy = GaugeMetricFamily("streamcount_camera_healthy",
                                    "1 when the camera's counts can be trusted",
                                    labels=["camera"])
        for name, cam in cams.items():
            for key, fam in gauges.items():
                v = cam.get(key)
                if v is not None:
                    fam.add_metric([name], float(v))
            for key, fam in counters.items():
                v = cam.get(key)
                if v is not None:
                    fam.add_metric([name], float(v))
            for s in CAMERA_STATES:
                state.add_metric([name, s], 1.0 if cam.get("state") == s else 0.0)
            healthy.add_metric([name], 0.0 if cam.get("health") else 1.0)
        yield from gauges.values()
        yield from counters.values()
        yield state
        yield healthy
        if snap.get("shard"):  # a sharded replica: which share of the cameras this is
            index, count = str(snap["shard"]).split("/")
            shard = GaugeMetricFamily("streamcount_shard", "this replica's shard (cameras by "
                                      "rendezvous hashing)", labels=["index", "count"])
            shard.add_metric([index, count], 1.0)
            yield shard

        count = GaugeMetricFamily("streamcount_region_count", "smoothed region count "
                                  "(absent while unknown)", labels=["camera", "region"])
        raw = GaugeMetricFamily("streamcount_region_raw_count", "raw region count of the last "
                                "frame", labels=["camera", "region"])
        known = GaugeMetricFamily("streamcount_region_known",
                                  "1 when the region's count is known", labels=["camera", "region"])
        level = GaugeMetricFamily("streamcount_region_alert_level",
                                  "alert level of the region (one-hot; normal and unknown "
                                  "included)", labels=["camera", "region", "level"])
        density = GaugeMetricFamily("streamcount_region_density", "people per square metre "
                                    "(smoothed count over the region's floor area; calibrated "
                                    "regions while known)", labels=["camera", "region"])
        area = GaugeMetricFamily("streamcount_region_area_square_metres",
                                 "the region's floor area", labels=["camera", "region"])
        los = GaugeMetricFamily("streamcount_region_los", "level of service letter of the "
                                "density (one-hot)", labels=["camera", "region", "los"])
        for cam_name, regions in self._regions().items():
            for region, r in regions.items():
                labels = [cam_name, region]
                if r.get("area_m2") is not None:
                    area.add_metric(labels, float(r["area_m2"]))
                if r.get("density") is not None:
                    density.add_metric(labels, float(r["density"]))
                    for letter in "ABCDEF":
                        los.add_metric(labels + [letter], 1.0 if r.get("los") == letter else 0.0)
                if r.get("count") is not None:
                    count.add_metric(labels, float(r["count"]))
                if r.get("raw") is not None:
                    raw.add_metric(labels, float(r["raw"]))
                known.add_metric(labels, 1.0 if r.get("state") == CountState.OK.value else 0.0)
                level.add_metric(labels + [str(r.get("level") or "normal")], 1.0)
        yield count
        yield raw
        yield known
        yield level
        yield density
        yield area
        yield los


class MetricsServer:
    """Prometheus ``/metrics``, ``/healthz`` and ``/api/state`` for a running service.

    Args:
        snapshot: returns the service state (``{"running": bool, "cameras": {name: {...}},
            "inference": {...}, ...}``); called on every request.
        host: address to bind (default loopback only).
        port: TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
        auth: credentials every request must carry (default: none).
        console: the operator console's routes (``/``, ``/camera/...``, ``/api/...``).
        health_public: ``/healthz`` needs no credentials (probes).
    """

    name = "metrics"

    def __init__(self, snapshot: Snapshot, host: str = "127.0.0.1", port: int = 0, *,
                 auth: HttpAuth | None = None, console: Console | None = None,
                 health_public: bool = False) -> None:
        self._snapshot = snapshot
        self.auth = auth or HttpAuth()
        self.health_public = health_public
        self.console = console
        self.host = host
        self.requested_port = port
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram("streamcount_inference_seconds",
                                 "inference latency of one batch", buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.batch_size = Histogram("streamcount_inference_batch_size",
                                    "frames per inference batch", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self._lock = threading.Lock()
        self._regions: dict[str, dict[str, dict[str, Any]]] = {}
        self.registry.register(_SnapshotCollector(self._safe_snapshot, self.regions))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- the HTTP server -------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The bound port (None before :meth:`start`)."""
        return None if self._server is None else int(self._server.server_address[1])

    def start(self) -> int:
        """Bind and serve on a daemon thread; returns the bound port.

        Raises:
            OSError: the address cannot be bound (e.g. the port is in use).
        """
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer((self.host, self.requested_port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http",
                                        kwargs={"poll_interval": 0.25}, daemon=True)
        self._thread.start()
        log.info("metrics and health on http://%s:%d (/metrics, /healthz, /api/state)",
                 self.host, self.port)
        return int(self.port or 0)

    def shutdown(self) -> None:
        """Stop serving and release the port (open event streams end first: closing the
        server waits for its request threads)."""
        self._stopping = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- recording -------------------------------------------------------------------------------

    def observe_batch(self, latency_s: float, batch_size: int) -> None:
        """Record one inference call (from the scheduler thread)."""
        self.latency.observe(latency_s)
        self.batch_size.observe(batch_size)

    def handle(self, event: object) -> None:
        """Track region counts and alert levels from bus events (camera figures come from
        the snapshot)."""
        with self._lock:
            if isinstance(event, CountUpdate):
                self._regions.setdefault(event.camera, {})[event.region] = region_state(event)
            elif isinstance(event, AlertEvent):
                r = self._regions.setdefault(event.camera, {}).setdefault(event.region, {})
                r["level"] = None if event.level == "normal" else event.level

    def forget_camera(self, camera: str) -> None:
        """Drop a removed camera's series."""
        with self._lock:
            self._regions.pop(camera, None)

    def close(self) -> None:
        """Called by the bus after the last event: stop the HTTP server."""
        self.shutdown()

    # -- views -----------------------------------------------------------------------------------

    def regions(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{camera: {region: {count, raw, state, reason, level, ts}}}`` of cameras that the
        snapshot still lists."""
        with self._lock:
            return {c: {r: dict(v) for r, v in regs.items()} for c, regs in self._regions.items()}

    def _safe_snapshot(self) -> dict[str, Any]:
        snap = self._snapshot()
        cams = snap.get("cameras", {})
        # forget series of cameras the service no longer runs
        with self._lock:
            for gone in [c for c in self._regions if c not in cams]:
                self._regions.pop(gone, None)
        return snap

    def state(self) -> dict[str, Any]:
        """The ``/api/state`` document: the service snapshot with region states merged in."""
        snap = self._safe_snapshot()
        regions = self.regions()
        for name, cam in snap.get("cameras", {}).items():
            cam["regions"] = regions.get(name, {})
        return snap

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of this server's registry."""
        return generate_latest(self.registry)


def _json_default(value: Any) -> Any:
    if hasattr(value, "value"):
        return value.value
    return str(value)


def _clean(value: Any) -> Any:
    """Non-finite floats as null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _make_handler(owner: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "streamcount"
        _cookie: str | None = None

        def _authorized(self, path: str) -> bool:
            if owner.health_public and path in ("/healthz", "/health"):
                return True
            query = self.path.split("?", 1)[1] if "?" in self.path else ""
            result = owner.auth.check(self.headers, query)
            self._cookie = result.set_cookie
            if not result.ok:
                data = b'{"error": "authentication required"}'
                self.send_response(401)
                for k, v in owner.auth.challenge().items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            return result.ok

        def do_POST(self) -> None:  # noqa: N802 - http.server API name
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if not self._authorized(path):
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if owner.console is None or length > MAX_POST_BODY:
                    self._json(404 if owner.console is None else 413,
                               {"error": "no such endpoint" if owner.console is None
                                else "request too large"})
                    return
                body = self.rfile.read(length)
                resp = owner.console.post(path, body, self.headers.get("Content-Type") or "")
                if resp is None:
                    self._json(404, {"error": f"no such endpoint: {path}"})
                else:
                    self._send(resp.code, resp.body, resp.ctype, resp.headers)
            except Exception:
                log.exception("HTTP POST %s failed", path)
                self._json(500, {"error": "internal error"})

        def _events(self) -> None:
            assert owner.console is not None
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()

            def render() -> bytes:
                return json.dumps(_clean(owner.state()), default=_json_default,
                                  separators=(",", ":")).encode()

            try:
                for chunk in owner.console.events(render, lambda: owner._stopping):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away

        def do_GET(self) -> None:  # noqa: N802 - http.server API name
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if not self._authorized(path):
                return
            try:
                if path == "/api/events" and owner.console is not None:
                    self._events()
                    return
                resp = owner.console.get(path) if owner.console is not None else None
                if resp is not None:
                    self._send(resp.code, resp.body, resp.ctype, resp.headers)
                elif path == "/metrics":
                    self._send(200, owner.metrics_text(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/health"):
                    snap = owner._safe_snapshot()
                    running = bool(snap.get("running"))
                    body = {"status": "ok" if running else "stopping",
                            "cameras": {n: {"state": c.get("state"), "health": c.get("health")}
                                        for n, c in snap.get("cameras", {}).items()}}
                    self._json(200 if running else 503, body)
                elif path in ("/api/state", "/stats"):
                    self._json(200, owner.state())
                else:
                    self._json(404, {"error": f"no such endpoint: {path}",
                                     "endpoints": ["/healthz", "/metrics", "/api/state"]})
            except Exception:
                log.exception("HTTP %s failed", path)
                self._json(500, {"error": "internal error"})

        def _json(self, code: int, body: Any) -> None:
            data = json.dumps(_clean(body), default=_json_default, indent=1).encode()
            self._send(code, data, "application/json")

        def _send(self, code: int, data: bytes, ctype: str,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if self._cookie:
                self.send_header("Set-Cookie", self._cookie)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base API
            log.debug("http: " + format, *args)

    return Handler
