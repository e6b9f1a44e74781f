"""The operator console in a real headless Chromium (Debian's, driven by Playwright from PyPI;
no browser download) against a running service on a looped real clip (vtest.avi) and a real
mosquitto: the overview shows every camera and updates a count without a reload, the heat map
is not blank where the density map has people, a polygon drawn with the mouse gives the
expected YAML and, once saved, a new region count on MQTT. Screenshots go to
``$STREAMCOUNT_TEST_ARTEFACTS`` (default: the test's tmp dir)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamcount.config.loader import load_config
from streamcount.pipeline.service import Service
from tests.integration.mosquitto import Mosquitto, Subscriber

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PREFIX = "sc"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: the polygon drawn with the mouse, relative to the frame
DRAWN = [(0.1, 0.15), (0.45, 0.15), (0.45, 0.7), (0.1, 0.7)]


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e .[dev])")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def service(tmp_path: Path, broker: Mosquitto, model_file: Path,
            vtest_avi: Path) -> Iterator[Service]:
    path = tmp_path / "service.yaml"
    path.write_text(
        "# written by the browser test\n"
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: {PREFIX}, "
        f"spool_dir: {tmp_path / 'spool'}}}\n"
        "http: {port: 0}\n"
        f"inference: {{model: {model_file}, backend: torch, max_side: 320, threads: 1}}\n"
        "cameras:\n"
        f"  - name: hall   # the main camera\n    source: {vtest_avi}\n    loop: true\n"
        "    fps: 2\n    regions:\n"
        "      - name: left\n        polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n"
        "        area_m2: 60\n"
        f"  - name: yard\n    source: {vtest_avi}\n    loop: true\n    fps: 1\n")
    svc = Service(load_config(path), path)
    svc.start()
    yield svc
    svc.stop()


def artefacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("STREAMCOUNT_TEST_ARTEFACTS") or tmp_path / "artefacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


def get_json(url: str) -> Any:
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_heatmap_and_editor(tmp_path: Path, browser: Any, service: Service,
                                      broker: Mosquitto) -> None:
    base = f"http://127.0.0.1:{service.http_port}"
    shots = artefacts(tmp_path)
    sub = Subscriber(broker, [f"{PREFIX}/hall/#"])
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # overview: every camera, and a count that changes without a reload
    page.goto(base + "/")
    for cam in ("hall", "yard"):
        page.wait_for_selector(f'.card[data-camera="{cam}"]', timeout=60_000)
    cell = 'td.count[data-camera="hall"][data-region="all"]'
    page.wait_for_function(f"() => {{ const c = document.querySelector('{cell}');"
                           f" return c && c.textContent !== 'unknown'; }}", timeout=60_000)
    first = page.text_content(cell)
    page.evaluate("window.__loaded = true")  # gone if the page reloads
    page.wait_for_function(f"(v) => document.querySelector('{cell}').textContent !== v",
                           arg=first, timeout=60_000)
    assert page.evaluate("window.__loaded") is True
    page.screenshot(path=str(shots / "console-overview.png"), full_page=True)

    # camera page: frame, heat map not blank where the density map has people
    page.goto(base + "/camera/hall")
    page.wait_for_function("() => document.getElementById('heat').width > 0"
                           " && document.getElementById('frame').naturalWidth > 0",
                           timeout=60_000)
    page.wait_for_selector('#labels .label[data-region="left"]')
    for _ in range(40):  # the map the canvas shows (the service makes a new one per frame)
        d = get_json(base + "/api/cameras/hall/density")
        if page.get_attribute("#heat", "data-ts") == str(d["ts"]):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the heat map never showed the density map the API serves")
    peak = max(range(len(d["values"])), key=lambda i: d["values"][i])
    px, py = peak % d["width"], peak // d["width"]
    alpha = page.evaluate(
        """([x, y]) => { const c = document.getElementById('heat');
           return c.getContext('2d').getImageData(x, y, 1, 1).data[3]; }""", [px, py])
    assert d["sum"] > 0.5 and alpha > 100, (d["sum"], alpha)
    blank = page.evaluate(
        """() => { const c = document.getElementById('heat');
           const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
           let n = 0; for (let i = 3; i < a.length; i += 4) if (a[i] === 0) n++;
           return n / (a.length / 4); }""")
    assert 0 < blank < 1, blank  # transparent where the map is empty, coloured where not

    # the editor: draw a polygon with the mouse, name it, preview, YAML
    page.click("#ed-draw")
    stage = page.locator("#stage")
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    for x, y in DRAWN:  # real mouse events at the frame's relative positions
        stage.click(position={"x": x * box["width"], "y": y * box["height"]})
    page.click("#ed-finish")
    page.fill("#ed-name", "drawn")
    page.wait_for_function("() => document.getElementById('ed-yaml').textContent"
                           ".includes('name: drawn')", timeout=20_000)
    entry = yaml.safe_load(page.text_content("#ed-yaml"))
    assert entry[0]["name"] == "drawn"
    drawn = [v for p in entry[0]["polygon"] for v in p]
    assert drawn == pytest.approx([v for p in DRAWN for v in p], abs=0.004)
    preview = float(page.get_attribute("#ed-count", "data-count") or "nan")
    assert preview > 0
    page.screenshot(path=str(shots / "console-camera.jpg"), full_page=True, quality=80)

    # save (confirm the dialog): the config gets the region, the service a new count on MQTT
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#ed-save")
    page.wait_for_function("() => document.getElementById('ed-msg').textContent"
                           ".includes('reloaded')", timeout=30_000)
    text = Path(str(service.config_path)).read_text()
    assert "# the main camera" in text and "# written by the browser test" in text
    saved = yaml.safe_load(text)["cameras"][0]["regions"][-1]
    assert saved["name"] == "drawn"
    topic = f"{PREFIX}/hall/drawn/count"
    assert sub.wait_for(lambda _: any(json.loads(m.text).get("state") == "ok"
                                      for m in sub.on(topic)), 30)
    page.wait_for_selector('#labels .label[data-region="drawn"]', timeout=20_000)

    # edit an existing region: drag its top-right corner (0.5, 0) to (0.6, 0.2)
    page.wait_for_selector('#ed-region option[value="left"]', state="attached")
    page.select_option("#ed-region", "left")
    handle = page.locator('#handles .handle[data-index="1"]')
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    hb = handle.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.2 * box["height"], steps=5)
    page.mouse.up()
    page.wait_for_function("() => document.getElementById('ed-yaml').textContent"
                           ".includes('name: left') && !document.getElementById('ed-yaml')"
                           ".textContent.includes('[0.5, 0],')", timeout=20_000)
    moved = yaml.safe_load(page.text_content("#ed-yaml"))[0]["polygon"]
    assert moved[0] == [0, 0] and moved[2] == [0.5, 1] and moved[3] == [0, 1]
    assert moved[1] == pytest.approx([0.6, 0.2], abs=0.004)

    # readable on a phone
    phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    phone.goto(base + "/")
    phone.wait_for_selector('.card[data-camera="yard"]', timeout=30_000)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(shots / "console-phone.png"), full_page=True)
    phone.goto(base + "/camera/hall")
    phone.wait_for_function("() => document.getElementById('frame').naturalWidth > 0",
                            timeout=30_000)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(shots / "console-phone-camera.jpg"), full_page=True, quality=70)
    sub.close()
    assert not errors, errors
