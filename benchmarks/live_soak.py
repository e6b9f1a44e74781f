"""Soak test of the live service: N cameras (RTSP from the gst-rtsp-server test server and
looped files, all made from vtest.avi) for M minutes through :class:`streamcount.pipeline.
service.Service`.

Reports per camera: processed fps, frame age when its counts were ready (p50/p95/max),
decoded and dropped frames, reconnects; plus inference latency, batch size and the process
RSS growth after warm-up. With ``--fps`` above what inference can sustain (the default on
2 cores), the latest-frame-wins slots keep frame age bounded instead of letting a backlog
grow. ``--outage S`` kills the RTSP server for S seconds a third of the way in, to exercise
reconnects under load.

Usage::

    python benchmarks/live_soak.py [--cameras 2] [--rtsp 1] [--minutes 1] [--fps 5]
        [--max-side 480] [--model M] [--backend torch] [--threads 1] [--outage 0]
        [--json soak.json]

Needs ffmpeg; RTSP cameras need Debian's python3-gi + gir1.2-gst-rtsp-server-1.0 (without
them every camera is a looped file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.integration.rtsp_server

import torch  # noqa: E402

from streamcount.config.schema import ServiceConfig  # noqa: E402
from streamcount.models.card import ModelCard  # noqa: E402
from streamcount.models.registry import build  # noqa: E402
from streamcount.models.weights import PACKAGED_DIR, save_model  # noqa: E402
from streamcount.messages import CountUpdate  # noqa: E402
from streamcount.pipeline.service import Service  # noqa: E402
from tests.integration.rtsp_server import (RtspServer, gst_rtsp_missing,  # noqa: E402
                                           make_h264_clip, repeat_clip)

VTEST = [ROOT.parent / "shared" / "data" / "video" / "vtest.avi",
         Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")]
#: seconds ignored before RSS growth is measured (model, buffers, first batches)
WARMUP_S = 10.0


def find_vtest() -> Path:
    for p in VTEST:
        if p.exists():
            return p
    sys.exit("vtest.avi not found (../shared/data/video or Debian opencv-doc)")


def rss_mb() -> float:
    """Resident set size of this process (MiB)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def tiny_model(directory: Path) -> Path:
    default = PACKAGED_DIR / "default.safetensors"
    if default.exists():
        return default
    torch.manual_seed(0)
    path = directory / "tiny-random.safetensors"
    save_model(path, build("csrnet_1_4"), ModelCard.for_arch("csrnet_1_4", "tiny-random"))
    return path


class AgeSink:
    """Collects, per camera, the age of each counted frame when its update left the bus."""

    name = "soak"

    def __init__(self) -> None:
        self.ages: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def handle(self, event: object) -> None:
        if isinstance(event, CountUpdate) and event.region == "all" and event.raw is not None:
            with self._lock:
                self.ages.setdefault(event.camera, []).append(time.time() - event.ts)

    def close(self) -> None:
        pass


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(math.ceil(q / 100 * len(s))) - 1))
    return s[k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--rtsp", type=int, default=None,
                    help="how many cameras are RTSP (default: half, rounded up)")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--fps", type=float, default=5.0, help="inferences/s wanted per camera")
    ap.add_argument("--max-side", type=int, default=480)
    ap.add_argument("--model", default=None, help="model file or name (default: packaged "
                    "default, else a random CSRNet 1/4)")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--outage", type=float, default=0.0,
                    help="kill the RTSP server for this many seconds, once")
    ap.add_argument("--workdir", type=Path, default=None, help="clips are cached here")
    ap.add_argument("--json", type=Path, default=Path("live_soak.json"))
    args = ap.parse_args(argv)

    work = args.workdir or Path(tempfile.gettempdir()) / "streamcount-soak"
    work.mkdir(parents=True, exist_ok=True)
    duration = args.minutes * 60.0
    n_rtsp = (args.cameras + 1) // 2 if args.rtsp is None else min(args.rtsp, args.cameras)
    missing = gst_rtsp_missing() if n_rtsp else None
    if missing:
        print(f"no RTSP cameras: {missing}", file=sys.stderr)
        n_rtsp = 0
    vtest = find_vtest()
    clip = make_h264_clip(vtest, work / "vtest60.mp4", seconds=60, width=768, gop=20)
    repeats = max(2, int(math.ceil((duration + 120) / 60)))
    long_clip = repeat_clip(clip, work / f"vtest{repeats * 60}.mp4", repeats)
    model = args.model or str(tiny_model(work))

    server = RtspServer(long_clip).start() if n_rtsp else None
    cameras = []
    for i in range(args.cameras):
        rtsp = i < n_rtsp
        cameras.append({
            "name": f"{'rtsp' if rtsp else 'file'}{i}",
            "source": server.url if rtsp and server else str(clip),
            "loop": not rtsp, "fps": args.fps,
            "regions": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
                         "alerts": [{"level": "warning", "above": 1e9}]}]})
    cfg = ServiceConfig.model_validate({
        "http": {"port": 0},
        "inference": {"model": model, "backend": args.backend, "max_side": args.max_side,
                      "threads": args.threads, "max_batch": args.max_batch},
        "reconnect": {"initial_s": 0.5, "max_s": 5},
        "cameras": cameras})
    ages = AgeSink()
    svc = Service(cfg, extra_sinks=(ages,))
    rss: list[tuple[float, float]] = []
    t0 = time.monotonic()
    svc.start()
    outage_done = not (args.outage > 0 and server)
    try:
        while (now := time.monotonic() - t0) < duration:
            rss.append((now, rss_mb()))
            if not outage_done and server and now >= duration / 3:
                server.kill()
                time.sleep(args.outage)
                server.start()
                outage_done = True
            time.sleep(min(2.0, max(0.0, duration - now)))
        snap = svc.snapshot()
        elapsed = time.monotonic() - t0
    finally:
        svc.stop()
        if server:
            server.kill()
    rss.append((elapsed, rss_mb()))

    base = next((m for t, m in rss if t >= WARMUP_S), rss[0][1])
    # RSS peaks briefly while a batch runs: compare medians of quiet samples, not one sample
    end = sorted(m for _, m in rss[-6:-1] or rss)[len(rss[-6:-1] or rss) // 2]
    rows = []
    for name, cam in snap["cameras"].items():
        a = ages.ages.get(name, [])
        rows.append({
            "camera": name, "kind": cam["kind"], "state": cam["state"],
            "processed": cam["processed"], "processed_fps": cam["processed"] / elapsed,
            "decoded": cam["decoded"], "decoded_fps": cam["decoded"] / elapsed,
            "dropped": cam["dropped"], "reconnects": cam["reconnects"],
            "age_p50_s": percentile(a, 50), "age_p95_s": percentile(a, 95),
            "age_max_s": max(a) if a else None})
    inf = snap.get("inference", {})
    result: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "elapsed_s": elapsed, "cameras": rows,
        "inference": {"backend": inf.get("backend"), "model": inf.get("model"),
                      "latency_p50_s": inf.get("latency_p50_s"),
                      "latency_p95_s": inf.get("latency_p95_s"),
                      "batch_mean": inf.get("batch_mean"), "frames": inf.get("frames"),
                      "inferences_per_s": (inf.get("frames") or 0) / elapsed},
        "rss_mb": {"start": rss[0][1], "after_warmup": base, "end": end,
                   "growth_after_warmup": end - base,
                   "timeline": [(round(t, 1), round(m, 1)) for t, m in rss]},
    }
    wanted = args.fps * args.cameras
    result["overloaded"] = result["inference"]["inferences_per_s"] < 0.9 * wanted

    def f(v: float | None, nd: int = 2) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    print(f"\nlive soak: {args.cameras} camera(s) ({n_rtsp} RTSP), {elapsed:.0f} s, "
          f"{args.fps:g} fps wanted each, max side {args.max_side}, "
          f"{inf.get('backend')} x{args.threads} thread(s)")
    head = ("camera", "kind", "proc fps", "age p50", "age p95", "age max", "decoded",
            "dropped", "reconn")
    print("{:<8} {:<7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}".format(*head))
    for r in rows:
        print("{:<8} {:<7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}".format(
            r["camera"], r["kind"], f(r["processed_fps"]), f(r["age_p50_s"]),
            f(r["age_p95_s"]), f(r["age_max_s"]), r["decoded"], r["dropped"],
            r["reconnects"]))
    i = result["inference"]
    over = "  [overloaded: sources outpace inference]" if result["overloaded"] else ""
    print(f"inference: {f(i['inferences_per_s'])} frames/s (wanted {wanted:g}), latency p50 "
          f"{f(i['latency_p50_s'], 3)} s p95 {f(i['latency_p95_s'], 3)} s, mean batch "
          f"{f(i['batch_mean'])}{over}")
    r = result["rss_mb"]
    print(f"RSS: {r['start']:.0f} MiB at start, {r['after_warmup']:.0f} after warm-up, "
          f"{r['end']:.0f} at end (median of the last samples; growth "
          f"{r['growth_after_warmup']:+.1f} MiB)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
