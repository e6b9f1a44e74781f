"""End-to-end speed of ``streamcount count`` against a naive counting loop, in one run.

For each clip (vtest.avi, 768x576 native; a 1080p H.264 clip made from it with ffmpeg):

* **pipeline**: :func:`streamcount.pipeline.offline.count_input` with the default backend,
  batch and max-side, on the whole clip (wall time of the call, so decoding, resizing,
  backend set-up and the sinks count). It runs twice in a fresh artefact cache: ``cold``
  (ONNX export, int8 calibration and compilation included) and ``warm`` (artefacts cached,
  as on every later run over the same clip).
* **naive**: ``cv2.VideoCapture`` -> ``cv2.resize`` to the same input size -> numpy RGB
  normalisation -> torch eager fp32 NCHW on the same model, one frame at a time -> sum.

The ratio warm pipeline / naive and the agreement of the pipeline's counts with fp32 torch on
the same decoded frames (and with the naive loop, whose OpenCV decode converts colours
differently: swscale's default YUV->BGR is about one level darker than the exact BT.601
conversion the pipeline uses) are printed and written as JSON, with the process CPU time per frame of each (on a shared machine
the CPU cost is steadier than wall-clock speed). Usage::

    python benchmarks/count_speed.py [--model M] [--backend auto] [--json PATH]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamcount.engine.cache import cache_root
from streamcount.engine.preprocess import DEFAULT_MAX_SIDE, plan_input_size, prepare_frame
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.models.card import ModelCard
from streamcount.models.registry import build
from streamcount.models.weights import (PACKAGED_DIR, load_model, read_card, resolve_model,
                                        save_model)
from streamcount.pipeline.offline import DEFAULT_BATCH, count_input
from streamcount.sources.media import open_media

ROOT = Path(__file__).resolve().parents[1]
VTEST = [ROOT.parent / "shared" / "data" / "video" / "vtest.avi",
         Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")]


def find_vtest() -> Path:
    for p in VTEST:
        if p.exists():
            return p
    sys.exit("vtest.avi not found (../shared/data/video or Debian opencv-doc)")


def make_1080p(vtest: Path, folder: Path, seconds: float = 10.0) -> Path:
    """vtest.avi upscaled to 1920x1080 at 25 fps, H.264 (IP-camera-like: 2 s GOP, no B
    frames), kept in ``folder`` for later runs."""
    out = folder / f"vtest_1080p_{int(seconds)}s.mp4"
    if out.exists():
        return out
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to make the 1080p clip")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(vtest), "-t", str(seconds),
                    "-vf", "scale=1920:1080:flags=bicubic,fps=25", "-c:v", "libx264",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50", "-bf", "0",
                    str(tmp)], check=True)
    tmp.rename(out)
    return out


def model_path(ref: str | None, workdir: Path) -> Path:
    """The model to time: ``ref``, else the packaged default, else a random SKT 1/4 student
    (speed does not depend on the weights; count agreement does)."""
    if ref or (PACKAGED_DIR / "default.safetensors").exists():
        # a private copy: the packaged file may be replaced (e.g. by training) mid-run
        src = resolve_model(ref)
        dst = workdir / src.name
        shutil.copyfile(src, dst)
        return dst
    torch.manual_seed(0)
    p = workdir / "random_csrnet_1_4.safetensors"
    save_model(p, build("csrnet_1_4"), ModelCard.for_arch("csrnet_1_4", "random-csrnet_1_4"))
    return p


def naive_loop(clip: Path, model: Path, size: tuple[int, int], max_frames: int,
               max_seconds: float) -> dict[str, Any]:
    """The loop a user would write first (see the module docstring)."""
    net, card = load_model(model)
    net.eval()
    mean = np.asarray(card.mean, np.float32)
    std = np.asarray(card.std, np.float32)
    h, w = size
    cap = cv2.VideoCapture(str(clip))
    counts: list[float] = []
    c0 = time.process_time()
    t0 = time.perf_counter()
    while len(counts) < max_frames and time.perf_counter() - t0 < max_seconds:
        ok, frame = cap.read()
        if not ok:
            break
        img = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        x = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1).copy()).unsqueeze(0)
        with torch.no_grad():
            counts.append(float(net(x).sum()))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    cap.release()
    return {"frames": len(counts), "seconds": round(elapsed, 3),
            "fps": round(len(counts) / elapsed, 3),
            "cpu_ms_per_frame": round(1000 * cpu / max(1, len(counts)), 2), "counts": counts}


def pipeline_run(clip: Path, model: Path, backend: str, out: Path, batch: int,
                 threads: int | None) -> dict[str, Any]:
    c0 = time.process_time()
    t0 = time.perf_counter()
    summary = count_input(clip, model=str(model), backend=backend, out_dir=out, batch=batch,
                          threads=threads, progress=False)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    n = summary["frames_processed"]
    return {"frames": n, "seconds": round(wall, 3), "fps": round(n / wall, 3),
            "cpu_ms_per_frame": round(1000 * cpu / max(1, n), 2),
            "processing_fps": summary["processing_fps"], "backend": summary["backend"],
            "input_size": summary["input_size"]}


def fp32_on_pipeline_frames(clip: Path, model: Path, size: tuple[int, int],
                            frames: int) -> list[float]:
    """fp32 torch counts of the first ``frames`` frames decoded and resized exactly as the
    pipeline does (so only the backend's precision differs)."""
    net, card = load_model(model)
    backend = TorchBackend(net, card)
    out: list[float] = []
    with open_media(clip, transform=lambda im: prepare_frame(im, size)) as src:
        for frame in src:
            out.append(float(backend.infer(frame.image[None])[0].astype(np.float64).sum()))
            if len(out) >= frames:
                break
    return out


def pipeline_counts(out: Path) -> list[float]:
    with (out / "counts.csv").open(newline="") as fh:
        return [float(r["count"]) for r in csv.DictReader(fh) if r["region"] == "all"]


def agreement(pipe: list[float], ref: list[float]) -> dict[str, float]:
    """Relative difference of the pipeline's totals against fp32 over the common frames."""
    n = min(len(pipe), len(ref))
    a, b = np.asarray(pipe[:n]), np.asarray(ref[:n])
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-6)
    return {"frames": n, "mean_rel_diff": round(float(rel.mean()), 5),
            "max_rel_diff": round(float(rel.max()), 5),
            "total_rel_diff": round(float(abs(a.sum() - b.sum()) / max(abs(b.sum()), 1e-6)), 5)}


def bench_clip(name: str, clip: Path, model: Path, args: argparse.Namespace,
               workdir: Path) -> dict[str, Any]:
    card = load_model(model)[1]
    cap = cv2.VideoCapture(str(clip))
    src_hw = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    cap.release()
    size = plan_input_size(*src_hw, args.max_side, card.input_multiple)
    print(f"\n== {name}: {clip.name} {src_hw[1]}x{src_hw[0]} -> input {size[1]}x{size[0]}",
          flush=True)
    naive = naive_loop(clip, model, size, args.naive_frames, args.naive_seconds)
    print(f"naive loop    {naive['fps']:7.2f} frames/s ({naive['frames']} frames, "
          f"{naive['cpu_ms_per_frame']:.0f} CPU ms/frame)", flush=True)
    runs = {}
    for label in ("cold", "warm"):
        out = workdir / f"{name}-{label}"
        runs[label] = pipeline_run(clip, model, args.backend, out, args.batch, args.threads)
        print(f"pipeline {label:4s} {runs[label]['fps']:7.2f} frames/s end to end "
              f"({runs[label]['frames']} frames in {runs[label]['seconds']:.1f} s; "
              f"{runs[label]['processing_fps']:.2f} frames/s after set-up, "
              f"{runs[label]['cpu_ms_per_frame']:.0f} CPU ms/frame) "
              f"[{runs[label]['backend'].get('backend')} {runs[label]['backend'].get('precision')}]",
              flush=True)
    counts = pipeline_counts(workdir / f"{name}-warm")
    agree = agreement(counts, fp32_on_pipeline_frames(clip, model, size, naive["frames"]))
    vs_naive = agreement(counts, naive["counts"])
    ratio = runs["warm"]["fps"] / naive["fps"]
    print(f"speed-up      {ratio:7.2f}x (warm pipeline / naive)\n"
          f"counts        vs fp32 torch on the same frames: mean "
          f"{agree['mean_rel_diff'] * 100:.2f}%, max {agree['max_rel_diff'] * 100:.2f}%; vs the "
          f"naive loop (OpenCV decode): mean {vs_naive['mean_rel_diff'] * 100:.2f}% "
          f"({agree['frames']} frames)", flush=True)
    naive.pop("counts")
    return {"clip": str(clip), "source_size": list(src_hw), "input_size": list(size),
            "naive": naive, "pipeline_cold": runs["cold"], "pipeline_warm": runs["warm"],
            "speedup": round(ratio, 3),
            "cpu_cost_ratio": round(naive["cpu_ms_per_frame"] / runs["warm"]["cpu_ms_per_frame"], 3),
            "speedup_cold": round(runs["cold"]["fps"] / naive["fps"], 3),
            "counts_vs_fp32_same_frames": agree, "counts_vs_naive_loop": vs_naive}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model reference (default: the packaged default model, "
                                   "else a random SKT 1/4 student)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    p.add_argument("--clips", default="vtest,1080p", help="comma list of vtest, 1080p")
    p.add_argument("--naive-frames", type=int, default=100)
    p.add_argument("--naive-seconds", type=float, default=40.0)
    p.add_argument("--keep-cache", action="store_true",
                   help="use the normal artefact cache (default: a fresh one, so 'cold' includes "
                        "the ONNX export and int8 calibration)")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "count_speed.json"))
    args = p.parse_args(argv)
    vtest = find_vtest()
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_avg_start": list(os.getloadavg())},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"backend": args.backend, "batch": args.batch, "max_side": args.max_side,
                     "threads": args.threads},
        "clips": {},
    }
    with tempfile.TemporaryDirectory(prefix="count_speed-") as tmp:
        workdir = Path(tmp)
        clips_dir = cache_root() / "bench"  # the generated clip outlives the fresh cache
        if not args.keep_cache:  # "cold" then includes the ONNX export and int8 calibration
            os.environ["STREAMCOUNT_CACHE"] = str(workdir / "cache")
        model = model_path(args.model, workdir)
        card = read_card(model)
        results["model"] = {"name": card.name, "arch": card.arch, "sha256": card.sha256,
                            "source": args.model or "default"}
        clips = {"vtest": vtest}
        if "1080p" in args.clips.split(","):
            clips["1080p"] = make_1080p(vtest, clips_dir)
        for name, clip in clips.items():
            if name in args.clips.split(","):
                results["clips"][name] = bench_clip(name, clip, model, args, workdir)
    results["machine"]["load_avg_end"] = list(os.getloadavg())
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
