"""The operator console's HTTP routes, served by the metrics server on the service's port.

Pages (one small vanilla HTML/JS/CSS app in ``static/``, no CDN, no build step):

``/``                             overview of every camera, live over SSE
``/camera/<name>``                latest frame, density heat map, regions with live counts,
                                  count charts, recent alerts, the region editor

API:

``GET  /api/events``              SSE: the ``/api/state`` document every ``SSE_INTERVAL_S``
``GET  /api/cameras/<name>``      regions (relative polygons, area, LoS table), count history,
                                  recent alerts, whether the config can be saved
``GET  /api/cameras/<name>/frame.jpg``  the latest processed frame
``GET  /api/cameras/<name>/density``    the latest density map (0-255 of its max)
``POST /api/cameras/<name>/preview``    ``{name, polygon}`` -> ``{count, yaml}`` on the latest
                                        density map (400 with the reason if invalid)
``POST /api/cameras/<name>/regions``    ``{name, polygon}``: add or replace the region in the
                                        config file (comments kept), validate, then reload the
                                        service the way SIGHUP does

POSTs must be ``application/json`` (a cross-site form cannot send that without a CORS
preflight, which this server never grants).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from streamcount.config.edit import format_polygon, upsert_region_text, write_text_atomic
from streamcount.config.regions import RegionSpec
from streamcount.config.schema import ServiceConfig
from streamcount.console.state import ConsoleState
from streamcount.errors import UserError
from streamcount.regions import ALL, regions_from_specs

log = logging.getLogger(__name__)

#: how often the SSE stream sends the state (s)
SSE_INTERVAL_S = 1.0
#: largest accepted POST body (bytes)
MAX_BODY = 64 * 1024
_STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
           "index.html": "text/html; charset=utf-8"}


class ServiceLike(Protocol):
    """What the console needs of the service."""

    config: ServiceConfig
    config_path: str | None

    def camera_names(self) -> list[str]: ...

    def reload_from_file(self) -> Any: ...


@dataclass(frozen=True)
class Response:
    """An HTTP answer."""

    code: int
    body: bytes
    ctype: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(code: int, body: Any) -> Response:
    """``body`` as JSON."""
    return Response(code, json.dumps(body, default=str).encode())


def _static(name: str) -> bytes:
    return resources.files("streamcount.console").joinpath("static", name).read_bytes()


class Console:
    """Routes of the console for one service.

    Args:
        service: the running service (config, config path, reload).
        state: frames, density maps, history and alerts (a bus sink of the service).
        config_edit: whether the editor may save to the config file.
    """

    def __init__(self, service: ServiceLike, state: ConsoleState, config_edit: bool = True
                 ) -> None:
        self.service = service
        self.state = state
        self.config_edit = config_edit

    # -- GET -------------------------------------------------------------------------------------

    def get(self, path: str) -> Response | None:
        """The answer to ``GET path``, or None when the path is not the console's."""
        if path == "/" or path.startswith("/camera/"):
            return Response(200, _static("index.html"), _STATIC["index.html"],
                            {"Cache-Control": "no-cache"})
        if path.startswith("/static/") and path[len("/static/"):] in _STATIC:
            name = path[len("/static/"):]
            return Response(200, _static(name), _STATIC[name], {"Cache-Control": "no-cache"})
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[:2] == ["api", "cameras"]:
            camera = unquote(parts[2])
            if camera not in self.service.camera_names():
                return json_response(404, {"error": f"no running camera '{camera}'"})
            rest = parts[3:]
            if not rest:
                return json_response(200, self.camera_info(camera))
            if rest == ["frame.jpg"]:
                jpeg = self.state.jpeg(camera)
                if jpeg is None:
                    return json_response(404, {"error": "no frame processed yet"})
                return Response(200, jpeg, "image/jpeg", {"Cache-Control": "no-store"})
            if rest == ["density"]:
                d = self.state.density(camera)
                return json_response(404, {"error": "no density map yet"}) if d is None \
                    else json_response(200, d)
        if path == "/api/alerts":
            return json_response(200, self.state.alerts())
        return None

    def camera_info(self, camera: str) -> dict[str, Any]:
        """Regions (relative polygons), history, recent alerts and the editability."""
        cfg = self.service.config.camera(camera)
        regions = []
        for r in cfg.regions:
            rel = regions_from_specs([RegionSpec(name=r.name, polygon=r.polygon,
                                                 reference_size=r.reference_size)],
                                     f"camera '{camera}'")[0]
            regions.append({"name": r.name, "polygon": [list(p) for p in rel.polygon],
                            "area_m2": r.floor_area(), "los_table": r.los,
                            "levels": [a.level for a in r.alerts]})
        editable, why = self.editable()
        names = {r.name for r in cfg.regions} | {ALL}  # a region removed by a reload: gone
        history = {k: v for k, v in self.state.history(camera).items() if k in names}
        return {"name": camera, "fps": cfg.fps, "regions": regions,
                "history": history, "alerts": self.state.alerts(camera),
                "editable": editable, "editable_reason": why}

    def editable(self) -> tuple[bool, str | None]:
        """Whether the editor may save to the config file, else why not."""
        path = self.service.config_path
        if not self.config_edit:
            return False, "http.config_edit is false"
        if path is None:
            return False, "the service was not started from a config file"
        p = Path(path)
        if not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK):
            return False, f"{p} is not writable"
        return True, None

    @staticmethod
    def events(render: Callable[[], bytes], closed: Callable[[], bool]) -> Iterator[bytes]:
        """The SSE stream: ``data: <render()>`` (one JSON line) every ``SSE_INTERVAL_S`` until
        ``closed()``."""
        yield b"retry: 2000\n\n"
        while not closed():
            yield b"event: state\ndata: " + render() + b"\n\n"
            time.sleep(SSE_INTERVAL_S)

    # -- POST ------------------------------------------------------------------------------------

    def post(self, path: str, body: bytes, ctype: str) -> Response | None:
        """The answer to ``POST path``, or None when the path is not the console's."""
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["api", "cameras"] or \
                parts[3] not in ("preview", "regions"):
            return None
        if ctype.split(";")[0].strip().lower() != "application/json":
            return json_response(415, {"error": "send application/json"})
        camera = unquote(parts[2])
        if camera not in self.service.camera_names():
            return json_response(404, {"error": f"no running camera '{camera}'"})
        try:
            req = json.loads(body or b"{}")
            name = str(req.get("name") or "").strip()
            spec = RegionSpec(name=name, polygon=[(float(x), float(y))
                                                  for x, y in req.get("polygon") or []])
            polygon = regions_from_specs([spec], "the drawn region")[0].polygon
        except (ValueError, TypeError, AttributeError) as e:
            msg = e.errors()[0]["msg"] if hasattr(e, "errors") else str(e)
            return json_response(400, {"error": f"invalid region: {msg}"})
        except UserError as e:
            return json_response(400, {"error": str(e)})
        if parts[3] == "preview":
            count = self.state.preview(camera, polygon)
            return json_response(200, {"name": name, "count": count,
                                       "yaml": region_yaml(name, list(polygon))})
        return self.save(camera, name, list(polygon))

    def save(self, camera: str, name: str, polygon: list[tuple[float, float]]) -> Response:
        """Write the region into the config file, validate it, reload the service."""
        from streamcount.config.loader import check_config

        editable, why = self.editable()
        if not editable:
            return json_response(403, {"error": f"cannot save: {why}"})
        path = Path(str(self.service.config_path))
        try:
            text = path.read_text(encoding="utf-8")
            new = upsert_region_text(text, camera, name, polygon, path)
        except (OSError, UserError) as e:
            return json_response(409, {"error": str(e)})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".yaml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(new)
            _, issues = check_config(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)
        if issues:
            return json_response(400, {"error": "the edited config does not validate: "
                                                + issues[0].format(path)})
        try:
            write_text_atomic(path, new)
        except UserError as e:
            return json_response(500, {"error": str(e)})
        log.warning("region editor: region '%s' of camera '%s' saved to %s; reloading", name,
                    camera, path)
        try:
            result = self.service.reload_from_file()
        except UserError as e:
            return json_response(500, {"error": f"saved, but the reload failed: {e}"})
        return json_response(200, {"saved": str(path), "name": name,
                                   "yaml": region_yaml(name, polygon),
                                   "reload": {k: list(v) for k, v in vars(result).items()}})


def region_yaml(name: str, polygon: list[tuple[float, float]]) -> str:
    """The YAML of one region entry, as it goes under a camera's ``regions:``."""
    return f"- name: {name}\n  polygon: {format_polygon(polygon)}\n"
