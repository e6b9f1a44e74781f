"""Per-image count error of the three counting methods: density, detection and the hybrid.

* ``vtest.avi`` against the hand counts in ``tests/fixtures/vtest_hand_counts.csv``;
* ShanghaiTech ``part_{A,B}/test_data`` against their head annotations (``--limit`` images
  each, evenly spread; all by default).

Density: the packaged default model (or ``--model``) at max side 960 on ``--backend``.
Detection: the packaged ``yolo_fastest_body`` at 416x416, score >= 0.4, NMS 0.45.
Hybrid: :func:`streamcount.detect.hybrid.hybrid_count` with its default rule.

Usage::

    python benchmarks/counting_methods.py [--data ../shared/data] [--limit 0] [--json out.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# ruff: noqa: E402

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamcount.detect.counting import MethodCounter
from streamcount.detect.detector import Detector
from streamcount.engine.factory import create_backend
from streamcount.engine.preprocess import DEFAULT_MAX_SIDE, plan_input_size, prepare_frame

HAND_COUNTS = ROOT / "tests" / "fixtures" / "vtest_hand_counts.csv"


def hand_counts(path: Path = HAND_COUNTS) -> dict[int, int]:
    """Frame index -> people, from the hand-count fixture."""
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return {int(r["frame"]): int(r["count"]) for r in csv.DictReader(lines)}


def vtest_frames(video: Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """The wanted 0-based frames of a video, decoded with PyAV as BGR."""
    import av

    with av.open(str(video)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in wanted:
                yield i, f.to_ndarray(format="bgr24")
            if i >= max(wanted):
                break


def shanghaitech(root: Path, part: str, limit: int) -> Iterator[tuple[str, np.ndarray, int]]:
    """(name, BGR image, annotated heads) of a ShanghaiTech test split."""
    import cv2
    from scipy.io import loadmat

    images = sorted((root / f"part_{part}" / "test_data" / "images").glob("*.jpg"),
                    key=lambda p: int(p.stem.split("_")[1]))
    if limit:
        images = [images[int(i)] for i in np.linspace(0, len(images) - 1, limit)]
    for p in images:
        gt = root / f"part_{part}" / "test_data" / "ground-truth" / f"GT_{p.stem}.mat"
        heads = loadmat(str(gt))["image_info"][0, 0][0, 0][0]
        yield p.name, cv2.imread(str(p), cv2.IMREAD_COLOR), len(heads)


def evaluate(items: Iterator[tuple[str, np.ndarray, int]], density_backend, counters) -> dict:
    """Per-method MAE (and the auto method's choices) over ``items``."""
    errors: dict[str, list[float]] = {m: [] for m in counters}
    methods: dict[str, int] = {}
    rows = []
    for name, image, truth in items:
        size = plan_input_size(image.shape[0], image.shape[1], DEFAULT_MAX_SIDE,
                               density_backend.card.input_multiple)
        frame = prepare_frame(image, size)
        density = density_backend.infer(frame[None])
        row = {"image": name, "truth": truth}
        for m, counter in counters.items():
            r = counter.count([frame], density)[0]
            errors[m].append(r.count - truth)
            row[m] = round(r.count, 2)
            if m == "auto":
                methods[r.method] = methods.get(r.method, 0) + 1
                row["auto_method"] = r.method
        rows.append(row)
    return {"images": len(rows),
            "mae": {m: round(float(np.mean(np.abs(e))), 3) for m, e in errors.items()},
            "bias": {m: round(float(np.mean(e)), 3) for m, e in errors.items()},
            "auto_methods": methods, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--model", default=None, help="density model (default: the packaged one)")
    p.add_argument("--backend", default="onnx", help="backend of both models (default onnx)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, default=0, help="ShanghaiTech images per part (0: all)")
    p.add_argument("--parts", default="B,A")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    density = create_backend(args.backend, args.model, threads=args.threads)
    detector = Detector(backend=args.backend, threads=args.threads)
    counters = {m: MethodCounter(m, detector) for m in ("density", "detect", "auto")}
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    truth = hand_counts()
    items = ((f"frame {i}", img, truth[i])
             for i, img in vtest_frames(args.data / "video" / "vtest.avi", set(truth)))
    results["vtest_hand_counts"] = evaluate(items, density, counters)
    for part in [s for s in args.parts.split(",") if s]:
        results[f"shanghaitech_{part}_test"] = evaluate(
            shanghaitech(args.data / "shanghaitech", part, args.limit), density, counters)
    for name, r in results.items():
        mae = "  ".join(f"{m} {v:.2f}" for m, v in r["mae"].items())
        print(f"{name:<26} {r['images']:>4} images  MAE: {mae}   auto chose {r['auto_methods']}")
    print(f"({time.perf_counter() - t0:.0f} s; density {density.card.name} on {density.name}, "
          f"detector {detector.card.name} on {detector.backend.name})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
