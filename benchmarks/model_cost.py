"""Cost per frame of several models on each of some backends, measured in one run.

The frame is one random uint8 input of ``--size`` (default 960x720: a ShanghaiTech B image at
the default max side; the cost does not depend on the pixels); every model is timed on every backend in ``--rounds`` interleaved rounds (the machine is shared:
load drifts), and each figure is reported as a ratio to the first model's on the same backend,
measured in the same run. int8 backends use each model's cached calibration (``streamcount
models calibrate``, or made on first use).
Usage::

    python benchmarks/model_cost.py [--models default,accurate]
        [--backends openvino,openvino-int8] [--size 960x720] [--threads 2] [--json F.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/backends.py
# ruff: noqa: E402 (the imports below must follow the line above)

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

from streamcount.engine.factory import create_backend
from streamcount.engine.timing import time_backend
from streamcount.errors import UserError
from streamcount.models.weights import load_model, resolve_model

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="default,accurate",
                   help="comma-separated model references; the first is the baseline")
    p.add_argument("--backends", default="openvino,openvino-int8",
                   help="comma-separated backends (default openvino,openvino-int8)")
    p.add_argument("--size", default="960x720", help="input W x H (default 960x720)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=3, help="timed calls per round")
    p.add_argument("--json", type=Path,
                   default=ROOT / "benchmarks" / "results" / "model_cost.json")
    args = p.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        refs = [r for r in args.models.split(",") if r]
        kinds = [b for b in args.backends.split(",") if b]
        models = {ref: load_model(resolve_model(ref)) for ref in refs}  # all found first
        backends = {(kind, ref): create_backend(kind, models[ref], threads=args.threads)
                    for ref in refs for kind in kinds}
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, h // 8 * 8, w // 8 * 8, 3), dtype=np.uint8)
    per: dict[tuple[str, str], list[float]] = {k: [] for k in backends}
    for _ in range(args.rounds):
        for key, be in backends.items():
            per[key].append(time_backend(be, frame, warmup=1, runs=args.runs)["ms_per_frame"])
    rows = [{"backend": kind, "ran_on": backends[(kind, ref)].name, "model": ref,
             "ms_per_frame": median(v), "fps": 1000.0 / median(v),
             "ratio_to_baseline": median(v) / median(per[(kind, refs[0])]), "rounds_ms": v}
            for (kind, ref), v in per.items()]
    print(f"{'backend':<15} {'model':<20} {'ms/frame':>10} {'frames/s':>9} {'x ' + refs[0]:>14}")
    for r in rows:
        print(f"{r['ran_on']:<15} {r['model']:<20} {r['ms_per_frame']:>10.1f} {r['fps']:>9.2f} "
              f"{r['ratio_to_baseline']:>14.1f}")
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "backends": kinds,
           "input": f"{frame.shape[2]}x{frame.shape[1]}", "threads": args.threads,
           "baseline": refs[0], "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "load_average": os.getloadavg(), "models": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
