// streamcount operator console: overview (live over SSE), camera page (frame, density heat
// map, regions, charts, alerts) and the region editor. Vanilla JS, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const svgEl = (tag, attrs = {}) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const fmt = (v, nd = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(nd));
const ago = (ts) => (ts ? `${Math.max(0, Date.now() / 1000 - ts).toFixed(0)} s ago` : "");
const CAMERA = location.pathname.startsWith("/camera/")
  ? decodeURIComponent(location.pathname.slice("/camera/".length).replace(/\/$/, "")) : null;

// -- live state over SSE -------------------------------------------------------------------------

let lastState = null;
function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("state", (ev) => {
    lastState = JSON.parse(ev.data);
    $("conn").textContent = "live";
    $("conn").className = "conn live";
    if (CAMERA) renderCameraState(lastState); else renderOverview(lastState);
  });
  es.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn"; };
}

function regionRows(name, cam) {
  const table = el("table");
  const head = el("tr");
  for (const h of ["region", "count", "level", "p/m²", "LoS"]) head.append(el("th", {}, h));
  table.append(head);
  const regions = cam.regions || {};
  for (const r of Object.keys(regions).sort((a, b) => (a === "all") - (b === "all") || a.localeCompare(b))) {
    const v = regions[r];
    const tr = el("tr");
    tr.append(el("td", {}, r));
    tr.append(el("td", { class: "num count", "data-camera": name, "data-region": r },
      v.state === "ok" ? fmt(v.count) : "unknown"));
    const level = v.state === "ok" ? (v.level || "normal") : "unknown";
    tr.append(el("td", { class: `level-${level}` }, level));
    tr.append(el("td", { class: "num" }, v.density !== undefined ? fmt(v.density, 2) : ""));
    tr.append(el("td", {}, v.los || ""));
    table.append(tr);
  }
  return table;
}

function renderOverview(state) {
  const cards = $("cards");
  cards.replaceChildren();
  for (const name of Object.keys(state.cameras).sort()) {
    const cam = state.cameras[name];
    const card = el("article", { class: "card", "data-camera": name });
    const h = el("h3");
    h.append(el("a", { href: `/camera/${encodeURIComponent(name)}` }, name), " ",
      el("span", { class: `state ${cam.state}` }, cam.state));
    card.append(h);
    const age = cam.last_frame_age_s;
    card.append(el("div", { class: "meta" },
      `${fmt(cam.processed_fps)} fps processed · last frame ${age === null ? "–" : fmt(age, 1) + " s"} ago`
      + (cam.health ? ` · ${cam.health}` : cam.reason ? ` · ${cam.reason}` : "")));
    card.append(regionRows(name, cam));
    cards.append(card);
  }
}

function renderAlerts(list, target) {
  target.replaceChildren();
  for (const a of list) {
    const li = el("li", { class: `level-${a.level}` });
    li.textContent = `${new Date(a.ts * 1000).toLocaleTimeString()} ${a.camera}/${a.region}: `
      + `${a.previous} → ${a.level}` + (a.count !== null ? ` (count ${fmt(a.count)})` : "");
    target.append(li);
  }
  if (!list.length) target.append(el("li", { class: "hint" }, "none"));
}

// -- camera page ---------------------------------------------------------------------------------

let info = null;          // /api/cameras/<name>
const editor = { points: [], drawing: false, closed: false, drag: -1 };

function renderCameraState(state) {
  const cam = state.cameras[CAMERA];
  if (!cam) { $("cam-status").textContent = "not running on this replica"; return; }
  $("cam-status").textContent = `${cam.state}${cam.health ? " · " + cam.health : ""} · `
    + `${fmt(cam.processed_fps)} fps · last frame ${fmt(cam.last_frame_age_s, 1)} s ago`
    + (cam.method ? ` · counted by ${cam.method}` : "")
    + (cam.scale && cam.scale.mode === "auto" ? ` · scale ${fmt(cam.scale.scale, 2)}` : "");
  for (const lab of document.querySelectorAll("#labels .label")) {
    const v = (cam.regions || {})[lab.dataset.region];
    if (!v) continue;
    lab.textContent = `${lab.dataset.region}: ${v.state === "ok" ? fmt(v.count) : "?"}`
      + (v.los ? ` · ${fmt(v.density, 2)} p/m² ${v.los}` : "") + (v.level ? ` · ${v.level}` : "");
    lab.dataset.count = v.count === null ? "" : String(v.count);
  }
}

function centroid(poly) {
  let x = 0, y = 0;
  for (const [px, py] of poly) { x += px; y += py; }
  return [x / poly.length, y / poly.length];
}

function drawRegions() {
  const svg = $("overlay"), labels = $("labels");
  svg.replaceChildren(); labels.replaceChildren();
  if ($("show-regions").checked && info) {
    for (const r of info.regions) {
      svg.append(svgEl("polygon", { points: r.polygon.map((p) => p.join(",")).join(" "),
                                    "data-region": r.name }));
      const [cx, cy] = centroid(r.polygon);
      const lab = el("div", { class: "label", "data-region": r.name }, r.name);
      lab.style.left = `${cx * 100}%`; lab.style.top = `${cy * 100}%`;
      labels.append(lab);
    }
  }
  // the polygon being edited
  const pts = editor.points.map((p) => p.join(",")).join(" ");
  if (editor.points.length) {
    svg.append(svgEl(editor.closed ? "polygon" : "polyline",
                     { points: pts, class: "edit", id: "edit-shape" }));
  }
  const handles = $("handles");
  handles.replaceChildren();
  editor.points.forEach(([x, y], i) => {
    const h = el("div", { class: "handle", "data-index": String(i) });
    h.style.left = `${x * 100}%`; h.style.top = `${y * 100}%`;
    h.addEventListener("pointerdown", (ev) => {
      ev.stopPropagation(); ev.preventDefault();
      if (editor.drawing && i === 0 && editor.points.length >= 3) { finish(); return; }
      editor.drag = i;
    });
    handles.append(h);
  });
  if (lastState) renderCameraState(lastState);
}

function stagePoint(ev) {
  const r = $("stage").getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [clamp((ev.clientX - r.left) / r.width), clamp((ev.clientY - r.top) / r.height)];
}

function finish() {
  if (editor.points.length < 3) return;
  editor.drawing = false; editor.closed = true;
  $("stage").classList.remove("drawing");
  $("ed-finish").disabled = true;
  drawRegions(); preview();
}

async function preview() {
  const name = $("ed-name").value.trim();
  if (!editor.closed) return;
  const res = await fetch(`/api/cameras/${encodeURIComponent(CAMERA)}/preview`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: name || "new_region", polygon: editor.points }) });
  const body = await res.json();
  if (!res.ok) {
    $("ed-count").textContent = ""; $("ed-yaml").textContent = "";
    $("ed-msg").textContent = body.error; $("ed-msg").className = "err";
    $("ed-save").disabled = true;
    return;
  }
  $("ed-msg").textContent = ""; $("ed-msg").className = "";
  $("ed-count").textContent = body.count === null ? "no density map yet"
    : `${fmt(body.count)} people now (latest density map)`;
  $("ed-count").dataset.count = body.count === null ? "" : String(body.count);
  $("ed-yaml").textContent = body.yaml;
  $("ed-save").disabled = !(info && info.editable) || !name;
  $("ed-save").title = info && !info.editable ? info.editable_reason : "";
}

async function save() {
  const name = $("ed-name").value.trim();
  if (!confirm(`Save region "${name}" of ${CAMERA} to the config file and reload the service?`)) return;
  $("ed-save").disabled = true;
  const res = await fetch(`/api/cameras/${encodeURIComponent(CAMERA)}/regions`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name, polygon: editor.points }) });
  const body = await res.json();
  $("ed-msg").textContent = res.ok ? `saved to ${body.saved}; service reloaded` : body.error;
  $("ed-msg").className = res.ok ? "ok" : "err";
  if (res.ok) { clearEditor(); await loadInfo(); }
}

function clearEditor() {
  Object.assign(editor, { points: [], drawing: false, closed: false, drag: -1 });
  $("stage").classList.remove("drawing");
  $("ed-finish").disabled = true; $("ed-save").disabled = true;
  $("ed-yaml").textContent = ""; $("ed-count").textContent = "";
  drawRegions();
}

function setupEditor() {
  $("ed-draw").onclick = () => {
    clearEditor(); editor.drawing = true; $("ed-region").value = "";
    $("stage").classList.add("drawing"); $("ed-finish").disabled = false;
  };
  $("ed-finish").onclick = finish;
  $("ed-clear").onclick = clearEditor;
  $("ed-save").onclick = save;
  $("ed-name").oninput = () => { if (editor.closed) preview(); };
  $("ed-region").onchange = () => {
    const r = info && info.regions.find((x) => x.name === $("ed-region").value);
    clearEditor();
    if (!r) return;
    editor.points = r.polygon.map((p) => [...p]); editor.closed = true;
    $("ed-name").value = r.name;
    drawRegions(); preview();
  };
  $("stage").addEventListener("pointerdown", (ev) => {
    if (!editor.drawing) return;
    editor.points.push(stagePoint(ev));
    drawRegions();
  });
  window.addEventListener("pointermove", (ev) => {
    if (editor.drag < 0) return;
    editor.points[editor.drag] = stagePoint(ev);
    drawRegions();
  });
  window.addEventListener("pointerup", () => {
    if (editor.drag < 0) return;
    editor.drag = -1;
    preview();
  });
  $("show-regions").onchange = drawRegions;
  $("show-boxes").onchange = () => { $("boxes").style.display = $("show-boxes").checked ? "" : "none"; };
  $("show-heat").onchange = () => { $("heat").style.display = $("show-heat").checked ? "" : "none"; };
}

// frames and the heat map: refreshed about once a second
function refreshFrame() {
  const img = new Image();
  img.onload = () => {
    $("frame").src = img.src;
    $("stage").style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
    refreshHeat().finally(() => setTimeout(refreshFrame, 1000));
  };
  img.onerror = () => setTimeout(refreshFrame, 1000);
  img.src = `/api/cameras/${encodeURIComponent(CAMERA)}/frame.jpg?t=${Date.now()}`;
}

function heatColour(v) {
  // 0..1 -> transparent blue .. green .. yellow .. red
  const r = Math.min(255, Math.max(0, 510 * v - 128)), g = Math.min(255, 510 * (1 - Math.abs(v - .5)) - 128);
  const b = Math.max(0, 255 - 510 * v);
  return [r, Math.max(0, g), b, Math.min(255, 40 + 600 * v)];
}

async function refreshHeat() {
  const res = await fetch(`/api/cameras/${encodeURIComponent(CAMERA)}/density`);
  if (!res.ok) return;
  const d = await res.json();
  const c = $("heat");
  c.width = d.width; c.height = d.height;
  // the map covers the top-left part of the frame (the model input is cropped to whole cells)
  const [cx, cy] = d.coverage || [1, 1];
  c.style.width = `${100 * cx}%`; c.style.height = `${100 * cy}%`;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(d.width, d.height);
  for (let i = 0; i < d.values.length; i++) {
    const v = d.values[i] / 255;
    const [r, g, b, a] = v > 0.02 ? heatColour(v) : [0, 0, 0, 0];
    img.data.set([r, g, b, a], i * 4);
  }
  ctx.putImageData(img, 0, 0);
  c.dataset.sum = String(d.sum);
  c.dataset.ts = String(d.ts);
  drawBoxes(d.boxes);
}

// people counted by detection (the camera's method is detect or hybrid), as frame fractions
function drawBoxes(boxes) {
  const svg = $("boxes");
  svg.replaceChildren();
  svg.dataset.count = boxes ? String(boxes.length) : "";
  if (!boxes || !$("show-boxes").checked) return;
  for (const [x1, y1, x2, y2] of boxes) {
    svg.append(svgEl("rect", { x: x1, y: y1, width: Math.max(0, x2 - x1),
                               height: Math.max(0, y2 - y1) }));
  }
}

function drawChart(canvas, points) {
  const w = canvas.width = canvas.clientWidth * devicePixelRatio;
  const h = canvas.height = canvas.clientHeight * devicePixelRatio;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const vals = points.filter((p) => p[1] !== null);
  if (!vals.length) return;
  const t1 = points[points.length - 1][0], t0 = Math.min(points[0][0], t1 - 60);
  const top = Math.max(1, ...vals.map((p) => p[1])) * 1.1;
  ctx.strokeStyle = "#2f363d"; ctx.fillStyle = "#9aa0a6"; ctx.font = `${11 * devicePixelRatio}px sans-serif`;
  ctx.fillText(top.toFixed(0), 2, 12 * devicePixelRatio);
  ctx.fillText(`${((t1 - t0) / 60).toFixed(0)} min`, 2, h - 3);
  ctx.strokeStyle = "#4fc3f7"; ctx.lineWidth = 1.5 * devicePixelRatio;
  ctx.beginPath();
  let pen = false;
  for (const [t, v] of points) {
    if (v === null) { pen = false; continue; }
    const x = ((t - t0) / (t1 - t0 || 1)) * w, y = h - (v / top) * h;
    if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    pen = true;
  }
  ctx.stroke();
}

function renderCharts() {
  const box = $("charts");
  box.replaceChildren();
  for (const [region, points] of Object.entries(info.history).sort()) {
    const div = el("div", { class: "chart", "data-region": region });
    div.append(el("div", { class: "meta" }, `${region} (${points.length} points)`));
    const c = el("canvas");
    div.append(c); box.append(div);
    drawChart(c, points);
  }
}

async function loadInfo() {
  const res = await fetch(`/api/cameras/${encodeURIComponent(CAMERA)}`);
  if (!res.ok) { $("cam-status").textContent = (await res.json()).error; return; }
  info = await res.json();
  const sel = $("ed-region"), keep = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "new region"));
  for (const r of info.regions) sel.append(el("option", { value: r.name }, r.name));
  sel.value = keep;
  if (!info.editable) $("ed-save").title = info.editable_reason || "";
  drawRegions(); renderCharts(); renderAlerts(info.alerts, $("cam-alerts"));
}

async function loadAlerts() {
  const res = await fetch("/api/alerts");
  if (res.ok) renderAlerts(await res.json(), $("all-alerts"));
}

// -- start ---------------------------------------------------------------------------------------

if (CAMERA) {
  $("camera").hidden = false;
  $("cam-title").textContent = CAMERA;
  document.title = `${CAMERA} · streamcount`;
  setupEditor();
  loadInfo();
  setInterval(() => { if (editor.drag < 0) loadInfo(); }, 5000);
  refreshFrame();
} else {
  $("overview").hidden = false;
  loadAlerts();
  setInterval(loadAlerts, 5000);
}
connect();
