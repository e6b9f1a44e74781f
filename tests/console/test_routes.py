"""The console's HTTP API on a running service (vtest.avi, no browser): frame, density map,
history, preview answers and refusals; saving is refused while the config is read-only."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamcount.config.loader import load_config
from streamcount.console.routes import Console
from streamcount.console.state import HISTORY_S, HISTORY_STEP_S
from streamcount.pipeline.service import Service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def service(tmp_path: Path, model_file: Path, vtest_avi: Path) -> Iterator[Service]:
    path = tmp_path / "service.yaml"
    path.write_text(
        "http: {port: 0}\n"
        f"inference: {{model: {model_file}, backend: torch, max_side: 160, threads: 1}}\n"
        f"cameras:\n  - name: hall\n    source: {vtest_avi}\n    loop: true\n    fps: 2\n"
        "    regions: [{name: left, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}]\n")
    svc = Service(load_config(path), path)
    svc.start()
    yield svc
    svc.stop()
    path.chmod(0o644)


def call(svc: Service, path: str, body: Any = None, ctype: str = "application/json"
         ) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes)
                                      else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{svc.http_port}{path}", data=data,
                                 headers={"Content-Type": ctype} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw, code, kind = r.read(), r.status, r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        raw, code, kind = e.read(), e.code, e.headers["Content-Type"]
    return code, json.loads(raw) if kind.startswith("application/json") else raw


def test_api(service: Service) -> None:
    deadline = time.monotonic() + 60
    while call(service, "/api/cameras/hall/frame.jpg")[0] != 200:
        assert time.monotonic() < deadline, "no frame within 60 s"
        time.sleep(0.5)
    code, jpeg = call(service, "/api/cameras/hall/frame.jpg")
    assert jpeg[:2] == b"\xff\xd8"
    code, d = call(service, "/api/cameras/hall/density")
    assert code == 200 and len(d["values"]) == d["width"] * d["height"]
    assert max(d["values"]) == 255 and d["frame"] == [768, 576]

    whole = [[0, 0], [1, 0], [1, 1], [0, 1]]
    code, p = call(service, "/api/cameras/hall/preview", {"name": "whole", "polygon": whole})
    assert code == 200 and p["count"] == pytest.approx(d["sum"], rel=0.5)
    assert p["yaml"] == "- name: whole\n  polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]\n"
    bowtie = [[0, 0], [1, 1], [1, 0], [0, 1]]
    code, err = call(service, "/api/cameras/hall/preview", {"name": "b", "polygon": bowtie})
    assert code == 400 and "self-intersecting" in err["error"]
    code, err = call(service, "/api/cameras/hall/preview", {"name": "a b", "polygon": whole})
    assert code == 400 and "invalid region" in err["error"]
    assert call(service, "/api/cameras/hall/preview", b"name=x", "text/plain")[0] == 415
    assert call(service, "/api/cameras/nope/preview", {"name": "x", "polygon": whole})[0] == 404
    assert call(service, "/api/cameras/nope")[0] == 404

    code, info = call(service, "/api/cameras/hall")
    assert info["editable"] is True and info["regions"][0]["name"] == "left"
    assert info["history"]["left"] and info["history"]["all"]
    assert HISTORY_S / HISTORY_STEP_S <= 3600  # bounded

    # http.config_edit: false, and a read-only config: the editor may not save
    body = json.dumps({"name": "x", "polygon": whole}).encode()
    off = Console(service, service.console_state, config_edit=False)
    resp = off.post("/api/cameras/hall/regions", body, "application/json")
    assert resp is not None and resp.code == 403 and b"config_edit is false" in resp.body
    cfg = Path(str(service.config_path))
    cfg.chmod(0o444)
    if not os.access(cfg, os.W_OK):  # root writes read-only files: nothing to refuse then
        code, err = call(service, "/api/cameras/hall/regions", {"name": "x", "polygon": whole})
        assert code == 403 and "not writable" in err["error"]
    assert "name: x" not in cfg.read_text()


def test_event_stream_and_stop_with_a_client_connected(service: Service) -> None:
    stream = urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/api/events",
                                    timeout=10)
    assert stream.headers["Content-Type"] == "text/event-stream"
    lines = [stream.readline() for _ in range(4)]
    assert lines[2] == b"event: state\n" and lines[3].startswith(b"data: {")
    state = json.loads(lines[3][len(b"data: "):])
    assert "hall" in state["cameras"]
    t0 = time.monotonic()
    service.stop()
    assert time.monotonic() - t0 < 8, "an open event stream held up the stop"
    stream.close()
