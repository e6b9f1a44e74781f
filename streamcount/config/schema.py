"""The service configuration (``streamcount run`` / ``streamcount validate``): pydantic models.

Every model forbids unknown keys. Global ``smoothing``, ``health`` and ``reconnect`` sections
are defaults that a camera (and, for smoothing, a region) may override; the
``ServiceConfig.camera_*`` / ``region_smoothing`` helpers return the effective settings.

Relative file paths (a camera's file ``source``, ``sinks.*``, ``mqtt.spool_dir``, TLS files,
an ``inference.model`` path) resolve relative to the config file's directory: the loader passes
it as the validation context ``{"base_dir": ...}``.

Errors that belong to one field of a model are raised as :func:`field_error` so the loader can
report the full key path (``cameras[0].regions[1].polygon``) rather than the model's path.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (BaseModel, ConfigDict, Field, ValidationInfo, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from streamcount.config.redact import redact
from streamcount.config.regions import RegionSpec
from streamcount.errors import RegionError

#: pydantic error type whose ``ctx["field"]`` names the field (below the model) at fault
FIELD_ERROR = "field_error"
#: alert states that are not rule levels
RESERVED_LEVELS = ("normal", "unknown")

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_DEVICE_RE = re.compile(r"^/dev/video\d+$")
_URL_SCHEMES = ("rtsp", "rtsps", "http", "https")


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error of ``field`` raised from a model validator (the loader appends ``field`` to
    the key path)."""
    return PydanticCustomError(FIELD_ERROR, message, {"field": field})


def default_spool_dir() -> str:
    """``$STREAMCOUNT_HOME/spool``, else ``$XDG_STATE_HOME/streamcount/spool``
    (``~/.local/state/streamcount/spool``)."""
    home = os.environ.get("STREAMCOUNT_HOME")
    if home:
        return str(Path(home) / "spool")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state) / "streamcount" / "spool")


def _resolve_path(value: str | None, info: ValidationInfo) -> str | None:
    """``~`` expanded; a relative path made absolute against the config file's directory.

    Where that path does not exist but the same relative path does exist from the working
    directory (a config written for the repository root, as in the README), that one is used.
    """
    if value is None:
        return None
    p = Path(value).expanduser()
    base = (info.context or {}).get("base_dir") if info.context else None
    if not p.is_absolute() and base is not None:
        from_config = Path(base) / p
        p = p.resolve() if (not from_config.exists() and p.exists()) else from_config
    return os.path.normpath(p) if p.is_absolute() else value


class _Model(BaseModel):
    # coerce numbers: `password: 1234` in YAML is an int, but a password all the same
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class SmoothingConfig(_Model):
    """How raw region counts are smoothed before display and alerting."""

    method: Literal["ema", "median", "none"] = Field(
        "ema", description="ema: exponential with separate rise/fall time constants; "
                           "median: sliding median of the last `window` counts; none: raw")
    rise_s: float = Field(2.0, ge=0, description="EMA time constant while the count rises (s)")
    fall_s: float = Field(5.0, ge=0, description="EMA time constant while the count falls (s)")
    window: int = Field(5, ge=1, description="median window (number of counts)")


class AlertRule(_Model):
    """One alert level of a region: enter above ``above`` for ``for_s`` seconds, leave below
    ``below`` (hysteresis; default ``above``) for ``clear_s`` seconds."""

    level: str = Field(min_length=1, pattern=NAME_PATTERN,
                       description="level name, e.g. warning or critical")
    above: float | None = Field(None, description="enter when the smoothed count is above "
                                                  "this (or give above_density)")
    above_density: float | None = Field(
        None, gt=0, description="enter when the density (people/m²) is above this; the "
                                "region needs area_m2 or ground")
    for_s: float = Field(0, ge=0, description="... continuously for this long (s)")
    below: float | None = Field(None, description="leave when below this (default: above)")
    below_density: float | None = Field(None, ge=0, description="leave when the density is "
                                                                "below this (default: "
                                                                "above_density)")
    clear_s: float = Field(0, ge=0, description="... continuously for this long (s)")
    cooldown_s: float | None = Field(None, ge=0,
                                     description="minimum time between two entries (s)")
    renotify_s: float | None = Field(None, gt=0,
                                     description="re-publish the active level this often (s)")

    @field_validator("level")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_LEVELS:
            raise ValueError(f"'{v}' is reserved (alert states {', '.join(RESERVED_LEVELS)})")
        return v

    @model_validator(mode="after")
    def _hysteresis(self) -> AlertRule:
        if (self.above is None) == (self.above_density is None):
            raise field_error("above", "give exactly one of above (people) and above_density "
                                       "(people/m²)")
        if self.above_density is not None:
            if self.below is not None:
                raise field_error("below", "a density rule leaves by below_density")
            if self.below_density is None:
                self.below_density = self.above_density
            elif self.below_density > self.above_density:
                raise field_error("below_density", f"below_density ({self.below_density:g}) "
                                                   f"must not exceed above_density "
                                                   f"({self.above_density:g})")
            return self
        if self.below_density is not None:
            raise field_error("below_density", "below_density needs above_density")
        if self.below is None:
            self.below = self.above
        elif self.below > self.above:
            raise field_error("below", f"below ({self.below:g}) must not exceed above "
                                       f"({self.above:g})")
        return self

    @property
    def exit_below(self) -> float:
        """The leave threshold (``below``, defaulting to ``above``)."""
        assert self.above is not None, "a density rule must be resolved to counts first"
        return self.above if self.below is None else self.below

    def in_counts(self, area_m2: float | None) -> AlertRule:
        """This rule with count thresholds: a density rule's thresholds times the region's
        floor area (``area_m2``; required for a density rule)."""
        if self.above_density is None:
            return self
        if area_m2 is None:
            raise ValueError(f"alert '{self.level}' uses density but the region has no area")
        below = self.below_density if self.below_density is not None else self.above_density
        return self.model_copy(update={"above": self.above_density * area_m2,
                                       "below": below * area_m2})


class GroundCalibration(_Model):
    """Four points on the floor (image coordinates like the polygon's) and where they
    are on the floor in metres: ``metres`` gives each point's (x, y), or ``rectangle_m`` says
    the points are the corners of a width x depth rectangle, in order."""

    image: list[tuple[float, float]] = Field(min_length=4, max_length=4)
    metres: list[tuple[float, float]] | None = Field(None, min_length=4, max_length=4)
    rectangle_m: tuple[float, float] | None = Field(
        None, description="(width, depth) of the rectangle the four image points outline")

    @model_validator(mode="after")
    def _check(self) -> GroundCalibration:
        if (self.metres is None) == (self.rectangle_m is None):
            raise field_error("metres", "give exactly one of metres and rectangle_m")
        if self.rectangle_m is not None:
            w, d = self.rectangle_m
            if not (w > 0 and d > 0 and math.isfinite(w) and math.isfinite(d)):
                raise field_error("rectangle_m", f"width and depth must be positive metres, "
                                                 f"got {w:g} x {d:g}")
        return self

    @property
    def floor_points(self) -> list[tuple[float, float]]:
        """The four floor points in metres."""
        if self.metres is not None:
            return list(self.metres)
        assert self.rectangle_m is not None
        w, d = self.rectangle_m
        return [(0.0, 0.0), (w, 0.0), (w, d), (0.0, d)]


class RegionConfig(RegionSpec):
    """A camera region: polygon plus its alert rules and optional smoothing override."""

    model_config = ConfigDict(extra="forbid", frozen=False, coerce_numbers_to_str=True)

    alerts: list[AlertRule] = Field(default_factory=list)
    smoothing: SmoothingConfig | None = None
    area_m2: float | None = Field(None, description="the region's real floor area (m²): "
                                                    "enables density and LoS")
    ground: GroundCalibration | None = Field(
        None, description="four floor points with metric positions: the floor area of the "
                          "polygon from their homography (instead of area_m2)")
    los: Literal["walkway", "queue"] = Field(
        "walkway", description="LoS table: walkway (Fruin 1971) or queue (HCM queuing)")

    @model_validator(mode="after")
    def _check(self) -> RegionConfig:
        problem = polygon_problem(self)
        if problem:
            raise field_error(*problem)
        area = self._check_area()
        for i, msg in duplicates([r.level for r in self.alerts], "alert level"):
            raise field_error(f"alerts[{i}].level", msg)
        for i, rule in enumerate(self.alerts):
            if rule.above_density is not None and area is None:
                raise field_error(f"alerts[{i}].above_density",
                                  "a density alert needs the region's area_m2 or ground")
        thresholds = [r.in_counts(area).above for r in self.alerts]
        for i, msg in duplicates(thresholds, "alert threshold"):
            key = "above" if self.alerts[i].above is not None else "above_density"
            raise field_error(f"alerts[{i}].{key}", msg)
        return self

    def _check_area(self) -> float | None:
        from streamcount.floor import check_area
        if self.area_m2 is not None and self.ground is not None:
            raise field_error("ground", "give area_m2 or ground, not both")
        if self.area_m2 is not None:
            problem = check_area(self.area_m2)
            if problem:
                raise field_error("area_m2", problem)
            return self.area_m2
        if self.ground is None:
            return None
        area = self.floor_area()
        problem = check_area(area) if area is not None else None
        if problem:
            raise field_error("ground", f"the polygon's floor area from the ground points: "
                                        f"{problem}")
        return area

    def floor_area(self) -> float | None:
        """The region's floor area in m² (``area_m2``, or from ``ground``); None without
        either.

        Raises:
            PydanticCustomError: (as a field error of ``ground``) the ground points give no
                usable homography for this polygon.
        """
        if self.area_m2 is not None or self.ground is None:
            return self.area_m2
        from streamcount.floor import CalibrationError, ground_area, homography
        from streamcount.regions import regions_from_specs
        image = list(self.ground.image)
        if self.reference_size is not None:  # pixels, like the polygon
            rw, rh = self.reference_size
            image = [(x / rw, y / rh) for x, y in image]
        try:
            H = homography(image, self.ground.floor_points)
            poly = regions_from_specs([RegionSpec(name=self.name, polygon=self.polygon,
                                                  reference_size=self.reference_size)],
                                      "ground")[0].polygon
            return ground_area(H, poly)
        except CalibrationError as e:
            raise field_error("ground", str(e)) from None


def polygon_problem(spec: RegionSpec) -> tuple[str, str] | None:
    """``(field, message)`` when the region's geometry is invalid (see
    :func:`streamcount.regions.regions_from_specs`), else None."""
    from streamcount.regions import regions_from_specs
    tag = "\x00"
    try:
        regions_from_specs([RegionSpec(name=spec.name, polygon=spec.polygon,
                                       reference_size=spec.reference_size)], tag)
    except RegionError as e:
        msg = str(e)
        msg = msg[len(tag) + 2:] if msg.startswith(tag + ": ") else msg
        return ("name" if "reserved" in msg else "polygon"), msg
    return None


def duplicates(values: list[Any], what: str) -> list[tuple[int, str]]:
    """``(index, message)`` for every value that repeats an earlier one."""
    out = []
    for i, v in enumerate(values):
        if v in values[:i]:
            shown = f"{v:g}" if isinstance(v, float) else f"'{v}'"
            out.append((i, f"duplicate {what} {shown}"))
    return out


class TlsConfig(_Model):
    """MQTT over TLS. Enabled without ``ca_file`` = the system CA store."""

    enabled: bool = False
    ca_file: str | None = None
    certfile: str | None = Field(None, description="client certificate (mutual TLS)")
    keyfile: str | None = Field(None, description="client key (mutual TLS)")
    insecure: bool = Field(False, description="skip certificate and host name verification")

    @field_validator("ca_file", "certfile", "keyfile")
    @classmethod
    def _paths(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _resolve_path(v, info)

    @model_validator(mode="after")
    def _check(self) -> TlsConfig:
        for name in ("ca_file", "certfile", "keyfile"):
            v = getattr(self, name)
            if v is not None and not Path(v).is_file():
                raise field_error(name, f"file not found: {v}")
        if self.keyfile and not self.certfile:
            raise field_error("keyfile", "keyfile needs certfile")
        return self


class MqttConfig(_Model):
    """The MQTT sink. Topics: ``<topic_prefix>/available`` (retained online/offline, last will),
    ``<prefix>/<camera>/status``, ``<prefix>/<camera>/<region>/count`` (retained),
    ``<prefix>/<camera>/<region>/alert`` (events, QoS 1, spooled on disk until acknowledged),
    ``<prefix>/stats``."""

    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("streamcount", min_length=1, pattern=r"^[^#+]+$")
    client_id: str | None = None
    username: str | None = None
    password: str | None = Field(None, repr=False)
    keepalive: int = Field(30, ge=1)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    qos_count: Literal[0, 1, 2] = 0
    qos_status: Literal[0, 1, 2] = 1
    qos_alert: Literal[1, 2] = Field(1, description="alerts need an acknowledgement: 1 or 2")
    count_interval_s: float = Field(30, gt=0, description="re-publish unchanged counts (s)")
    stats_interval_s: float = Field(30, gt=0)
    spool_dir: str | None = Field(None, description="on-disk alert spool "
                                                    "(default $STREAMCOUNT_HOME/spool)")
    spool_max: int = Field(10000, ge=1)

    @field_validator("client_id", "username", "password")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None  # ${MQTT_USER:-} with MQTT_USER unset: no credentials

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("spool_dir")
    @classmethod
    def _spool(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _resolve_path(v, info)

    @property
    def effective_spool_dir(self) -> str:
        """``spool_dir`` or the default one."""
        return self.spool_dir or default_spool_dir()


class HomeAssistantConfig(_Model):
    """Home Assistant MQTT discovery (needs ``mqtt``): a sensor per region, a binary sensor per
    alert rule, a device per camera (see :mod:`streamcount.sinks.homeassistant`)."""

    discovery_prefix: str = Field("homeassistant", min_length=1, pattern=r"^[^#+]+$",
                                  description="Home Assistant's discovery prefix")
    birth_topic: str | None = Field(None, description="Home Assistant's birth message topic; "
                                                      "the configs are re-published when it "
                                                      "says online (default "
                                                      "<discovery_prefix>/status)")

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return v.rstrip("/")

    @property
    def effective_birth_topic(self) -> str:
        """``birth_topic`` or ``<discovery_prefix>/status``."""
        return self.birth_topic or f"{self.discovery_prefix}/status"


class HttpConfig(_Model):
    """The HTTP endpoint (Prometheus ``/metrics``, ``/health``, ``/stats``, the operator
    console at ``/``). Loopback only by default; with ``token`` (bearer) or
    ``username``/``password`` (basic) every request must authenticate."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    console: bool = Field(True, description="serve the operator console (dashboard, region "
                                            "editor) at /")
    config_edit: bool = Field(True, description="let the region editor save to the config "
                                                "file (when writable) and reload")
    token: str | None = Field(None, repr=False, description="bearer token for every request "
                                                            "(browsers: open /?token=...)")
    username: str | None = Field(None, description="basic auth user (with password)")
    password: str | None = Field(None, repr=False, description="basic auth password")
    health_public: bool = Field(False, description="/healthz answers without credentials "
                                                   "(container and Kubernetes probes; it shows "
                                                   "camera names and states)")

    @field_validator("token", "username", "password")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None  # ${TOKEN:-} unset: no auth

    @model_validator(mode="after")
    def _pair(self) -> HttpConfig:
        if (self.username is None) != (self.password is None):
            raise field_error("password" if self.password is None else "username",
                              "basic auth needs both username and password")
        return self

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must authenticate."""
        return self.token is not None or self.username is not None


class InferenceConfig(_Model):
    """Model and backend shared by all cameras."""

    model: str | None = Field(None, description="model name or file (default: 'default')")
    backend: str = Field("auto", min_length=1)
    max_side: int | None = Field(None, ge=32, description="largest input side "
                                                          "(default engine.preprocess)")
    max_batch: int = Field(4, ge=1)
    max_wait_ms: float = Field(20, ge=0)
    threads: int | None = Field(None, ge=1)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        if Path(v).suffix or os.sep in v or v.startswith("~"):
            v = _resolve_path(v, info)
        from streamcount.errors import ModelError
        from streamcount.models.weights import resolve_model
        try:
            resolve_model(v)
        except ModelError as e:
            raise ValueError(str(e)) from None
        return v


class HealthConfig(_Model):
    """Stream-health gating: counts become ``unknown`` when a stream is unhealthy."""

    stall_s: float = Field(10, gt=0, description="no frame for this long = stalled")
    black_level: float = Field(8, ge=0, description="mean grey level below this = black")
    uniform_std: float = Field(3, ge=0, description="grey std below this = uniform")
    frozen_s: float = Field(60, gt=0, description="identical frames for this long = frozen (a static empty scene looks frozen too, so keep this long)")


class ReconnectConfig(_Model):
    """Exponential back-off between stream reconnect attempts."""

    initial_s: float = Field(1, gt=0)
    max_s: float = Field(30, gt=0)
    jitter: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise field_error("max_s", "max_s must be at least initial_s")
        return self


def source_kind(source: str) -> Literal["rtsp", "http", "device", "file"]:
    """Classify a camera source (no validation)."""
    m = _SCHEME_RE.match(source)
    if m:
        return "rtsp" if m.group(1).lower().startswith("rtsp") else "http"
    return "device" if _DEVICE_RE.match(source) else "file"


def check_source(source: str) -> str | None:
    """Why ``source`` is not a usable camera source (credentials redacted), or None."""
    m = _SCHEME_RE.match(source)
    if m:
        scheme = m.group(1).lower()
        shown = redact(source)
        if scheme not in _URL_SCHEMES:
            return (f"unknown URL scheme '{scheme}' in {shown} (expected "
                    f"{', '.join(s + '://' for s in _URL_SCHEMES)}, /dev/videoN or a file)")
        parts = urlsplit(source)
        if not parts.hostname:
            return f"URL has no host: {shown}"
        try:
            parts.port
        except ValueError:
            return f"URL has an invalid port: {shown}"
        if any(c.isspace() for c in source):
            return f"URL contains white space: {shown}"
        return None
    if source.startswith("/dev/"):
        if not _DEVICE_RE.match(source):
            return f"not a video device (expected /dev/videoN): {source}"
        return None
    if "://" in source or source.strip() != source or not source:
        return f"malformed source: {redact(source)!r}"
    if not Path(source).is_file():
        return (f"file not found: {source} (relative paths are relative to the config "
                f"file's directory)")
    return None


class CameraConfig(_Model):
    """One camera (or a file replayed as one)."""

    name: str = Field(min_length=1, pattern=NAME_PATTERN)
    source: str = Field(description="rtsp://, rtsps://, http(s):// (MJPEG or HLS), "
                                    "/dev/videoN or a video file")
    loop: bool = Field(False, description="replay a file source forever")
    fps: float = Field(2.0, gt=0, description="inferences per second")
    max_side: int | None = Field(None, ge=32, description="largest model-input side; set "
                                                           "(e.g. by streamcount calibrate), it "
                                                           "wins over scale: auto")
    gain: float = Field(1.0, gt=0, le=10, description="multiplies the density model's "
                                                      "counts (written by streamcount calibrate "
                                                      "only when no max_side fits alone); "
                                                      "detections are not scaled")
    counting: Literal["auto", "density", "detect"] = Field(
        "auto", description="auto: detection where people are few and clearly visible, "
                            "density elsewhere (the hybrid rule); density; detect")
    scale: Literal["auto", "off"] = Field(
        "auto", description="auto: the density model's input scaled so people are about as "
                            "tall as it counts best, from the detector's person heights "
                            "(updated slowly; not used when max_side is set)")
    enabled: bool = True
    regions: list[RegionConfig] = Field(default_factory=list)
    smoothing: SmoothingConfig | None = None
    health: HealthConfig | None = None
    reconnect: ReconnectConfig | None = None
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    csv: bool = Field(False, description="write this camera's counts to sinks.csv_dir")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str, info: ValidationInfo) -> str:
        if source_kind(v) == "file":
            v = _resolve_path(v, info) or v
        problem = check_source(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("loop")
    @classmethod
    def _loop(cls, v: bool, info: ValidationInfo) -> bool:
        src = info.data.get("source")
        if v and src is not None and source_kind(src) != "file":
            raise ValueError("loop is only for file sources")
        return v

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        for i, msg in duplicates([r.name for r in self.regions], "region name"):
            raise field_error(f"regions[{i}].name", msg)
        return self

    @property
    def kind(self) -> Literal["rtsp", "http", "device", "file"]:
        """``rtsp``, ``http``, ``device`` or ``file``."""
        return source_kind(self.source)


class SinksConfig(_Model):
    """File sinks."""

    jsonl: str | None = Field(None, description="append every event as JSON lines here")
    csv_dir: str | None = Field(None, description="per-camera CSV (cameras with csv: true)")

    @field_validator("jsonl", "csv_dir")
    @classmethod
    def _paths(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _resolve_path(v, info)


class ServiceConfig(_Model):
    """The whole service config file."""

    mqtt: MqttConfig | None = None
    homeassistant: HomeAssistantConfig | None = None
    http: HttpConfig = Field(default_factory=HttpConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    cameras: list[CameraConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ServiceConfig:
        for i, msg in duplicates([c.name for c in self.cameras], "camera name"):
            raise field_error(f"cameras[{i}].name", msg)
        if self.homeassistant is not None and self.mqtt is None:
            raise field_error("homeassistant", "Home Assistant discovery needs the mqtt "
                                               "section")
        return self

    # effective per-camera settings -------------------------------------------------------

    def camera(self, name: str) -> CameraConfig:
        """The camera called ``name`` (KeyError if none)."""
        for c in self.cameras:
            if c.name == name:
                return c
        raise KeyError(name)

    def enabled_cameras(self) -> Iterator[CameraConfig]:
        """Cameras with ``enabled: true``."""
        return (c for c in self.cameras if c.enabled)

    def camera_smoothing(self, cam: CameraConfig) -> SmoothingConfig:
        """The camera's smoothing, else the global one."""
        return cam.smoothing or self.smoothing

    def region_smoothing(self, cam: CameraConfig, region: RegionConfig) -> SmoothingConfig:
        """The region's smoothing, else the camera's, else the global one."""
        return region.smoothing or self.camera_smoothing(cam)

    def camera_health(self, cam: CameraConfig) -> HealthConfig:
        """The camera's health thresholds, else the global ones."""
        return cam.health or self.health

    def camera_reconnect(self, cam: CameraConfig) -> ReconnectConfig:
        """The camera's reconnect back-off, else the global one."""
        return cam.reconnect or self.reconnect

    def camera_max_side(self, cam: CameraConfig) -> int:
        """The camera's largest input side, else ``inference.max_side``, else the default."""
        if cam.max_side is not None:
            return cam.max_side
        if self.inference.max_side is not None:
            return self.inference.max_side
        from streamcount.engine.preprocess import DEFAULT_MAX_SIDE
        return DEFAULT_MAX_SIDE

    def summary(self) -> dict[str, Any]:
        """Counts for ``validate``: cameras and regions."""
        return {"cameras": len(self.cameras),
                "regions": sum(len(c.regions) for c in self.cameras)}
