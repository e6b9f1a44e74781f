"""Speed and count agreement of every CPU backend, measured in one run.

For each backend of :data:`streamcount.engine.factory.BACKENDS` (or ``--backends``):

* **speed**: median / min / max ms per ``infer`` call at each ``--sizes`` (W x H, rounded down
  to the model's input multiple) and ``--batch``, with ``--threads`` threads, via
  :func:`streamcount.engine.timing.time_backend`. Backends are timed in ``--rounds``
  interleaved rounds (the machine is shared: load drifts), and the ratio to eager fp32 torch is
  taken from the same run.
* **count deviation**: mean absolute relative difference of per-image counts from fp32 torch on
  ShanghaiTech part_B test images (max side 960); the int8 backends are calibrated on part_B
  train images (``--calibration`` of them).

The model is ``--model`` or the packaged default; without either, a randomly initialised 1/4
CSRNet student (speed does not depend on the weights; the count deviation then means little).
Usage::

    python benchmarks/backends.py [--model M] [--sizes 960x540,768x576] [--batch 1]
        [--threads 2] [--json results.json]
"""

from __future__ import annotations

import os

# PyTorch's OpenMP threads spin while they wait; on a busy 2-core machine a spinning thread
# starves the one it waits for: eager torch with 2 threads took 1165 ms for a 192x128 frame,
# 37 ms with OMP_WAIT_POLICY=PASSIVE (load average 8). It must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# ruff: noqa: E402 (the imports below must follow the line above)

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from streamcount.engine.factory import AUTO_PREFERENCE, BACKENDS, create_backend
from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.engine.quantize import count_deviation
from streamcount.engine.timing import time_backend
from streamcount.errors import UserError
from streamcount.models.card import ModelCard
from streamcount.models.registry import build
from streamcount.models.weights import load_model, resolve_model

ROOT = Path(__file__).resolve().parents[1]
SHANGHAITECH = ROOT.parent / "shared" / "data" / "shanghaitech"
REFERENCE = "torch"
log = logging.getLogger("benchmarks.backends")


def parse_size(text: str) -> tuple[int, int]:
    """``"960x540"`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 960x540, got {text!r}") from None
    return w, h


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model reference (default: the packaged default model)")
    p.add_argument("--backends", default=",".join(n for n in BACKENDS if n in AUTO_PREFERENCE),
                   help="comma-separated backends (default: every CPU backend)")
    p.add_argument("--sizes", default="960x540,768x576",
                   type=lambda s: [parse_size(v) for v in s.split(",")],
                   help="input sizes WxH, comma-separated (default: 960x540,768x576)")
    p.add_argument("--batch", type=int, default=1, help="frames per infer call (default 1)")
    p.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    p.add_argument("--runs", type=int, default=10, help="timed calls per round (default 10)")
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved timing rounds over all backends (default 2)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per round (default 2)")
    p.add_argument("--calibration", type=int, default=16,
                   help="part_B train images for int8 calibration (default 16)")
    p.add_argument("--eval-images", type=int, default=30,
                   help="part_B test images for the count deviation (default 30; 0 = skip)")
    p.add_argument("--data", type=Path, default=SHANGHAITECH, help="ShanghaiTech root")
    p.add_argument("--json", type=Path, help="write the results as JSON to this file")
    return p.parse_args(argv)


def load(ref: str | None) -> tuple[nn.Module, ModelCard, bool]:
    """The model to benchmark and whether it has trained weights."""
    try:
        net, card = load_model(resolve_model(ref))
        return net, card, True
    except UserError:
        if ref:
            raise
    torch.manual_seed(0)
    log.warning("no default model: timing a randomly initialised csrnet_1_4")
    card = ModelCard.for_arch("csrnet_1_4", "random-csrnet_1_4")
    return build("csrnet_1_4").eval(), card, False


def partb(root: Path, split: str, n: int, multiple: int) -> list[np.ndarray]:
    """The first ``n`` part_B ``split`` images at max side 960."""
    d = root / "part_B" / f"{split}_data" / "images"
    paths = sorted(d.glob("IMG_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))[:n]
    if len(paths) < n:
        sys.exit(f"need {n} images in {d} (see --data)")
    out = []
    for path in paths:
        im = cv2.imread(str(path), cv2.IMREAD_COLOR)
        out.append(prepare_frame(im, plan_input_size(*im.shape[:2], 960, multiple)))
    return out


def counts(backend: Any, images: list[np.ndarray]) -> list[float]:
    return [float(backend.infer(im[None]).sum()) for im in images]


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One timing from several rounds: median of round medians, overall min and max."""
    out = dict(rounds[0])
    out["median_ms"] = float(np.median([r["median_ms"] for r in rounds]))
    out["min_ms"] = min(r["min_ms"] for r in rounds)
    out["max_ms"] = max(r["max_ms"] for r in rounds)
    out["runs"] = sum(r["runs"] for r in rounds)
    out["ms_per_frame"] = out["median_ms"] / out["batch"]
    out["fps"] = 1000.0 * out["batch"] / out["median_ms"]
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    net, card, trained = load(args.model)
    multiple = card.input_multiple
    calib = partb(args.data, "train", args.calibration, multiple) if args.calibration else []
    evals = partb(args.data, "test", args.eval_images, multiple) if args.eval_images else []
    load_before = os.getloadavg()

    backends: dict[str, Any] = {}
    setup: dict[str, dict[str, Any]] = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            be = create_backend(name, (net, card), threads=args.threads, calibration_frames=calib)
        except UserError as e:
            log.warning("skipping %s: %s", name, e)
            setup[name] = {"error": str(e)}
            continue
        setup[name] = {"setup_s": round(time.perf_counter() - t0, 2), "loaded": be.name,
                       "describe": be.describe()}
        if be.name != name:
            log.warning("%s fell back to %s: not timed", name, be.name)
            continue
        backends[name] = be

    reference_counts = counts(backends[REFERENCE], evals) if evals else []
    deviation: dict[str, float] = {}
    for name, be in backends.items():
        if evals:
            deviation[name] = count_deviation(reference_counts, counts(be, evals))

    rows: list[dict[str, Any]] = []
    for w, h in args.sizes:
        ih, iw = plan_input_size(h, w, None, multiple)
        src = evals or calib or [np.zeros((ih, iw, 3), np.uint8)]
        x = np.stack([cv2.resize(src[i % len(src)], (iw, ih), interpolation=cv2.INTER_AREA)
                      for i in range(args.batch)])
        per_round: dict[str, list[dict[str, Any]]] = {n: [] for n in backends}
        for _ in range(args.rounds):
            for name, be in backends.items():
                per_round[name].append(time_backend(be, x, warmup=args.warmup, runs=args.runs))
        base = combine(per_round[REFERENCE])["median_ms"]
        for name in backends:
            t = combine(per_round[name])
            t |= {"size": f"{w}x{h}", "input": f"{iw}x{ih}",
                  "speedup_vs_torch": base / t["median_ms"], "count_deviation": deviation.get(name)}
            rows.append(t)
            print_row(t)

    result = {
        "model": {"name": card.name, "arch": card.arch, "trained": trained},
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "load_before": load_before, "load_after": os.getloadavg()},
        "threads": args.threads, "batch": args.batch,
        "calibration_images": len(calib), "eval_images": len(evals),
        "setup": setup, "rows": rows,
    }
    print()
    print(markdown_table(rows, card.name, args))
    print(f"\nload average before/after: {load_before} / {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


def print_row(t: dict[str, Any]) -> None:
    log.info("%s %s: median %.1f ms [%.1f-%.1f] (%.1f fps) x%.2f vs torch", t["backend"],
             t["input"], t["median_ms"], t["min_ms"], t["max_ms"], t["fps"], t["speedup_vs_torch"])


def markdown_table(rows: list[dict[str, Any]], model: str, args: argparse.Namespace) -> str:
    lines = [f"model {model}, batch {args.batch}, {args.threads} threads; median ms per call "
             f"[min-max]; count deviation = mean |count - torch fp32| / torch fp32 on part_B test",
             "", "| backend | size (input) | median ms [min-max] | fps | vs torch | count dev. |",
             "|---|---|---|---|---|---|"]
    for t in rows:
        dev = "-" if t["count_deviation"] is None else f"{100 * t['count_deviation']:.2f} %"
        lines.append(f"| {t['backend']} | {t['size']} ({t['input']}) | **{t['median_ms']:.1f}** "
                     f"[{t['min_ms']:.1f}-{t['max_ms']:.1f}] | {t['fps']:.1f} | "
                     f"{t['speedup_vs_torch']:.2f}x | {dev} |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
