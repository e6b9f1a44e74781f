"""``streamcount engines``: build, list and clear cached TensorRT engines.

``engines build`` compiles the model for the given input sizes, batch range and precision
(minutes per engine) so that the service starts without building; it needs an NVIDIA GPU and
torch-tensorrt. ``engines list`` and ``engines clear`` work anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamcount.engine.engine_cache import FORMAT_SUFFIX, EngineCache
from streamcount.engine.preprocess import DEFAULT_MAX_SIDE, plan_input_size
from streamcount.errors import BackendError, InputError

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _batch(text: str) -> tuple[int, int, int]:
    from streamcount.engine.tensorrt import parse_batch_range

    try:
        return parse_batch_range(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _input(text: str) -> tuple[int, int]:
    from streamcount.bench.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``engines`` sub-command."""
    p = subparsers.add_parser("engines", help="build, list or clear TensorRT engines",
                              description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="engines_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="compile TensorRT engines now (NVIDIA GPU needed)")
    b.add_argument("--model", metavar="M", help="model file or name (default: the default model)")
    b.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16",
                   help="engine precision (default fp16; int8 needs --calib)")
    b.add_argument("--input", type=_input, action="append", metavar="HxW",
                   help="model input size, repeatable (HxW or 540p...; default: the size "
                        f"1080p sources are planned to, longer side {DEFAULT_MAX_SIDE})")
    b.add_argument("--batch", type=_batch, default=(1, 4, 16), metavar="MIN:OPT:MAX",
                   help="dynamic batch range (default 1:4:16)")
    b.add_argument("--calib", metavar="DIR", help="folder of sample camera images for int8")
    b.add_argument("--format", choices=tuple(FORMAT_SUFFIX), default="exported_program",
                   help="engine file format (default exported_program)")
    b.set_defaults(func=run_build)
    ls = sub.add_parser("list", help="show cached engines")
    ls.set_defaults(func=run_list)
    c = sub.add_parser("clear", help="delete cached engines")
    c.add_argument("--model", metavar="M", help="only this model's engines")
    c.set_defaults(func=run_clear)
    return p


def run(args: argparse.Namespace) -> int:
    return int(args.func(args))


def _require_tensorrt() -> None:
    from streamcount.engine.cuda import probe_cuda
    from streamcount.engine.tensorrt import probe_tensorrt

    reasons = []
    cuda = probe_cuda()
    if not cuda.available:
        reasons.append(f"no CUDA GPU ({cuda.reason})")
    trt = probe_tensorrt()
    if not trt.available:
        reasons.append(trt.reason)
    if reasons:
        raise BackendError("TensorRT needs an NVIDIA GPU and torch-tensorrt: " + "; ".join(reasons))


def load_calibration(folder: str, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` BGR images from ``folder`` (evenly spread over its sorted files)."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"calibration folder not found: {folder}")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images (.jpg, .png, .bmp) for int8 calibration")
    step = max(1, len(files) // limit)
    frames = []
    for p in files[::step][:limit]:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"{p}: not a readable image")
        frames.append(img)
    return frames


def run_build(args: argparse.Namespace) -> int:
    _require_tensorrt()
    from streamcount.bench.sizes import model_input, size_label
    from streamcount.engine.tensorrt import MAX_CALIBRATION_FRAMES, TensorRTBackend
    from streamcount.models.weights import load_model, resolve_model

    net, card = load_model(resolve_model(args.model))
    sizes = ([model_input(s, card.input_multiple) for s in args.input] if args.input else
             [plan_input_size(1080, 1920, DEFAULT_MAX_SIDE, card.input_multiple)])
    calib = None
    if args.precision == "int8":
        if not args.calib:
            raise InputError("int8 engines need --calib DIR (sample images from the cameras)")
        calib = load_calibration(args.calib, MAX_CALIBRATION_FRAMES)
    backend = TensorRTBackend(net, card, precision=args.precision, sizes=sizes,
                              batch=args.batch, calibration_frames=calib, fmt=args.format)
    for size in sizes:
        print(f"{card.name} {size_label(size)} batch {':'.join(map(str, args.batch))} "
              f"{args.precision}: {backend.engine_status[size]}")
    print(f"engines in {backend.engine_cache.root}")
    return 0


def _records_table(cache: EngineCache) -> str:
    recs = cache.records()
    if not recs:
        return f"no engines in {cache.root}"
    lines = [f"{'status':<11} {'input':>9} {'batch':>9} {'prec':<5} {'MB':>7} {'built':<16} "
             "gpu / runtime / file"]
    for r in recs:
        k = r.key
        built = (dt.datetime.fromtimestamp(r.built_at).strftime("%Y-%m-%d %H:%M")
                 if r.built_at else "-")
        mb = f"{r.size_bytes / 2**20:.1f}"
        if k is None:
            lines.append(f"{r.status:<11} {'-':>9} {'-':>9} {'-':<5} {mb:>7} {built:<16} "
                         f"{r.slot} ({r.reason})")
            continue
        batch = ":".join(map(str, k.batch))
        size = f"{k.input_size[0]}x{k.input_size[1]}"
        lines.append(f"{r.status:<11} {size:>9} {batch:>9} "
                     f"{k.precision:<5} {mb:>7} {built:<16} {k.gpu} (sm {k.capability}) / "
                     f"{k.runtime} / {r.slot}")
    lines.append(f"{len(recs)} engine(s) in {cache.root}")
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    print(_records_table(EngineCache()))
    return 0


def run_clear(args: argparse.Namespace) -> int:
    cache = EngineCache()
    fingerprint: Any = None
    if args.model:
        from streamcount.engine.cache import model_fingerprint
        from streamcount.models.weights import load_model, resolve_model

        net, card = load_model(resolve_model(args.model))
        fingerprint = model_fingerprint(net, card)
    n = cache.clear(model_sha256=fingerprint)
    print(f"removed {n} engine(s) from {cache.root}")
    return 0
