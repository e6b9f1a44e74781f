"""Speed a user feels, measured in one run: start-up, first use, and end-to-end frames/s.

Every figure is the wall time of the real ``streamcount`` command in a fresh process (so the
interpreter start, imports, model and backend loading count). The run uses a fresh artefact
cache (``--keep-cache``: the normal one) and starts the way a new installation would:

* ``cold``: ``streamcount models calibrate`` on 32 images of the model's training data
  (ShanghaiTech B train, where present: the model's int8 calibration, made once and never on
  the clips timed below; without the data the first input counted calibrates), then a first
  ``count`` of one image (the one-off ONNX exports of the density model and the detector).

Then, with warm caches:

* ``help``: ``streamcount --help``.
* ``one_image``: ``streamcount count IMAGE`` on a vtest frame saved as a JPEG (warm caches:
  measured after a first call that fills them).
* ``unseen_clip``: a clip made for this run (vtest cropped at a random offset to a random size
  and re-encoded, so no run has seen it), counted twice with the defaults: ``first`` and
  ``second``. The model's int8 calibration is cached, so the first run only adds ``auto``'s
  fp32 parity check on a few of its frames.
* ``vtest``: the whole of ``vtest.avi`` (795 frames) with the defaults (``--counting auto``,
  ``--scale auto``), with ``--counting density``, and with ``--counting density --scale off``
  (native 768x576 input, the naive loop's size); each run's ``profile`` (busy time per stage)
  and ``startup`` phases from its ``summary.json``, plus decoding alone.
* ``naive``: ``cv2.VideoCapture`` -> ``cv2.resize`` -> numpy normalisation -> torch eager fp32,
  one frame at a time, same model, 768x576, measured in the same run; ``speedup`` = pipeline
  frames/s / naive frames/s.
* ``counts``: the density runs' counts against fp32 torch on the same decoded frames (the
  pipeline's own input size), as ``auto`` judges them (``|c - fp32| / max(fp32, 20)``) and as
  plain relative differences; the default run's counts against the same command forced to
  fp32 (``--backend openvino``).

Usage::

    python benchmarks/count_speed.py [--json PATH] [--naive-frames N] [--skip-fp32-auto]
                                     [--calibration-frames DIR] [--keep-cache]

The machine is noted in the JSON (load averages at start and end, and whether the background
training job was running): on a shared 2-core box, absolute figures move with the load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VTEST = [ROOT.parent / "shared" / "data" / "video" / "vtest.avi",
         Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")]
#: images of the default model's training data, for its int8 calibration
TRAIN_IMAGES = ROOT.parent / "shared" / "data" / "shanghaitech" / "part_B" / "train_data" / "images"
CLI = [sys.executable, "-m", "streamcount"]


def find_vtest() -> Path:
    for p in VTEST:
        if p.exists():
            return p
    sys.exit("vtest.avi not found (../shared/data/video or Debian opencv-doc)")


def training_running() -> bool:
    """Whether the background training job (``training.train``/``evaluate``) is running."""
    out = subprocess.run(["pgrep", "-f", "training\\.(train|evaluate)"], capture_output=True)
    return out.returncode == 0


def timed(cmd: list[str]) -> float:
    """Wall seconds of ``cmd`` (which must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def count(inp: Path, out: Path, *extra: str) -> dict[str, Any]:
    """``streamcount count`` in a fresh process: wall time and its summary."""
    wall = timed([*CLI, "count", str(inp), "--out", str(out), "--quiet", *extra])
    summary = json.loads((out / "summary.json").read_text())
    n = summary["frames_processed"]
    return {"wall_s": round(wall, 3), "frames": n, "fps_end_to_end": round(n / wall, 2),
            "processing_fps": summary["processing_fps"], "elapsed_in_process_s":
            summary["elapsed_s"], "backend": summary["backend"].get("backend"),
            "input_size": summary["input_size"], "auto": summary.get("auto"),
            "counting": (summary.get("counting") or {}).get("counting"),
            "scale": (summary.get("counting") or {}).get("scale"),
            "startup": summary.get("startup"), "profile": summary.get("profile"),
            "quantization": summary["backend"].get("quantization")}


def unseen_clip(vtest: Path, folder: Path, frames: int = 200) -> Path:
    """vtest cropped at a random offset to a random size (multiple of 8 apart), H.264."""
    rng = random.Random(time.time_ns())
    w, h = rng.randrange(560, 737, 8), rng.randrange(400, 537, 8)
    x, y = rng.randrange(0, 768 - w + 1), rng.randrange(0, 576 - h + 1)
    out = folder / f"unseen_{w}x{h}_{x}_{y}.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(vtest), "-frames:v", str(frames),
                    "-vf", f"crop={w}:{h}:{x}:{y}", "-c:v", "libx264", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def decode_alone(clip: Path) -> dict[str, float]:
    """Decoding (PyAV, as the pipeline's reader does) with nothing else running."""
    from streamcount.sources.media import open_media

    t0, c0 = time.perf_counter(), time.process_time()
    with open_media(clip) as src:
        n = sum(1 for _ in src)
    wall = time.perf_counter() - t0
    return {"frames": n, "seconds": round(wall, 3), "ms_per_frame": round(1000 * wall / n, 3),
            "cpu_ms_per_frame": round(1000 * (time.process_time() - c0) / n, 3)}


def naive_loop(clip: Path, model: Path, size: tuple[int, int], max_frames: int,
               max_seconds: float) -> dict[str, Any]:
    """The loop a user would write first (see the module docstring)."""
    import torch

    from streamcount.models.weights import load_model

    net, card = load_model(model)
    net.eval()
    mean = np.asarray(card.mean, np.float32)
    std = np.asarray(card.std, np.float32)
    h, w = size
    cap = cv2.VideoCapture(str(clip))
    counts: list[float] = []
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
    cap.release()
    return {"frames": len(counts), "seconds": round(elapsed, 3),
            "fps": round(len(counts) / elapsed, 3), "input_size": [h, w]}


def fp32_counts(clip: Path, model: Path, size: tuple[int, int], frames: int) -> list[float]:
    """fp32 torch counts of the first ``frames`` frames decoded and resized as the pipeline
    does, at its density input ``size`` (so only the backend's precision differs)."""
    from streamcount.engine.preprocess import prepare_frame
    from streamcount.engine.torch_cpu import TorchBackend
    from streamcount.models.weights import load_model
    from streamcount.sources.media import open_media

    backend = TorchBackend(*load_model(model))
    out: list[float] = []
    with open_media(clip, transform=lambda im: prepare_frame(im, size)) as src:
        for frame in src:
            out.append(float(backend.infer(frame.image[None])[0].astype(np.float64).sum()))
            if len(out) >= frames:
                break
    return out


def csv_counts(out: Path) -> list[float]:
    with (out / "counts.csv").open(newline="") as fh:
        return [float(r["count"]) for r in csv.DictReader(fh) if r["region"] == "all"]


def agreement(pipe: list[float], ref: list[float]) -> dict[str, float]:
    """The pipeline's per-frame totals against fp32 over the common frames."""
    from streamcount.pipeline.backend_choice import AUTO_MIN_COUNT, auto_deviation

    n = min(len(pipe), len(ref))
    a, b = np.asarray(pipe[:n]), np.asarray(ref[:n])
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-6)
    return {"frames": n, "auto_deviation": round(auto_deviation(b, a), 5),
            "auto_min_count": AUTO_MIN_COUNT,
            "mean_abs_diff_people": round(float(np.abs(a - b).mean()), 4),
            "mean_rel_diff": round(float(rel.mean()), 5),
            "max_rel_diff": round(float(rel.max()), 5)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--naive-frames", type=int, default=100)
    p.add_argument("--naive-seconds", type=float, default=40.0)
    p.add_argument("--skip-fp32-auto", action="store_true",
                   help="skip the fp32 run of the default command (the counts comparison)")
    p.add_argument("--calibration-frames", default=str(TRAIN_IMAGES), metavar="DIR",
                   help="frames for the model's int8 calibration (default: ShanghaiTech B train "
                        "images; skipped when absent)")
    p.add_argument("--keep-cache", action="store_true",
                   help="use the normal artefact cache instead of a fresh one")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "count_speed.json"))
    args = p.parse_args(argv)
    from streamcount.engine.preprocess import DEFAULT_MAX_SIDE, plan_input_size
    from streamcount.models.weights import read_card, resolve_model

    vtest = find_vtest()
    model = resolve_model(None)
    card = read_card(model)
    res: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "load_avg_start": list(os.getloadavg()),
                    "training_running_start": training_running()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"name": card.name, "arch": card.arch, "sha256": card.sha256},
    }

    def say(text: str) -> None:
        print(text, flush=True)

    with tempfile.TemporaryDirectory(prefix="count_speed-") as tmp:
        work = Path(tmp)
        if not args.keep_cache:
            os.environ["STREAMCOUNT_CACHE"] = str(work / "cache")
        res["fresh_cache"] = not args.keep_cache
        cold: dict[str, Any] = {}
        calib = Path(args.calibration_frames)
        if calib.exists():
            cold["calibrate_s"] = round(timed([*CLI, "models", "calibrate", "default",
                                               str(calib)]), 3)
            cold["calibration_frames"] = str(calib)
            say(f"model calibration      {cold['calibrate_s']:.1f} s, once "
                f"(32 images of {calib})")
        timed([*CLI, "--help"])  # page in the package once
        res["help_s"] = round(min(timed([*CLI, "--help"]) for _ in range(3)), 3)
        say(f"--help                 {res['help_s']:.2f} s (best of 3)")

        ok, frame = cv2.VideoCapture(str(vtest)).read()
        assert ok
        image = work / "frame.jpg"
        cv2.imwrite(str(image), frame)
        first_image = count(image, work / "img0")  # fills the caches (exports) if needed
        cold["first_image_s"] = first_image["wall_s"]
        res["cold"] = cold
        img = [count(image, work / f"img{i}") for i in (1, 2, 3)]
        best = min(img, key=lambda r: r["wall_s"])
        res["one_image"] = best | {"runs_s": [r["wall_s"] for r in img]}
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in img)
        say(f"one image (warm)       {best['wall_s']:.2f} s (best of 3: {walls})")

        clip = unseen_clip(vtest, work)
        first = count(clip, work / "unseen1")
        second = count(clip, work / "unseen2")
        res["unseen_clip"] = {"clip": clip.name, "first": first, "second": second,
                              "first_minus_second_s": round(first["wall_s"] - second["wall_s"], 3)}
        say(f"unseen clip {clip.name}: first {first['wall_s']:.2f} s, second "
            f"{second['wall_s']:.2f} s ({first['frames']} frames)")

        res["calibration"] = (second.get("quantization") or {})
        runs = {"default": (), "density": ("--counting", "density"),
                "density_native": ("--counting", "density", "--scale", "off")}
        res["vtest"] = {"clip": str(vtest), "decode_alone": decode_alone(vtest)}
        for name, extra in runs.items():
            r = count(vtest, work / f"vtest-{name}", *extra)
            res["vtest"][name] = r | {"args": list(extra)}
            say(f"vtest {name:15s} {r['fps_end_to_end']:6.1f} frames/s end to end "
                f"({r['frames']} frames in {r['wall_s']:.1f} s; {r['processing_fps']:.1f} after "
                f"start-up; density input {r['input_size'][1]}x{r['input_size'][0]} on "
                f"{r['backend']})")

        size = plan_input_size(576, 768, DEFAULT_MAX_SIDE, card.input_multiple)
        naive = naive_loop(vtest, model, size, args.naive_frames, args.naive_seconds)
        res["naive"] = naive
        res["speedup"] = {name: round(res["vtest"][name]["fps_end_to_end"] / naive["fps"], 2)
                          for name in runs}
        ups = ", ".join(f"{k} {v:.1f}x" for k, v in res["speedup"].items())
        say(f"naive loop             {naive['fps']:6.2f} frames/s at {size[1]}x{size[0]}; "
            f"speed-up {ups}")

        agree: dict[str, Any] = {}
        for name in ("density", "density_native"):
            r = res["vtest"][name]
            ref = fp32_counts(vtest, model, tuple(r["input_size"]), args.naive_frames)
            agree[name] = agreement(csv_counts(work / f"vtest-{name}"), ref)
        if not args.skip_fp32_auto:
            fp32 = count(vtest, work / "vtest-fp32", "--backend", "openvino")
            res["vtest"]["default_fp32"] = fp32
            agree["default"] = agreement(csv_counts(work / "vtest-default"),
                                         csv_counts(work / "vtest-fp32"))
        res["counts_vs_fp32"] = agree
        for name, a in agree.items():
            say(f"counts {name:15s} vs fp32: auto deviation {100 * a['auto_deviation']:.2f} % "
                f"(limit 2 %), mean |diff| {a['mean_abs_diff_people']:.3f} people over "
                f"{a['frames']} frames")
    res["machine"]["load_avg_end"] = list(os.getloadavg())
    res["machine"]["training_running_end"] = training_running()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    say(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
