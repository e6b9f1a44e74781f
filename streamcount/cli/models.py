"""`streamcount models`: list, inspect, import and export counting models."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamcount.errors import InputError, ModelError
from streamcount.models.card import ModelCard
from streamcount.models.registry import ARCHITECTURES
from streamcount.models.stats import PAPER_INPUT_HW, arch_flops, arch_params
from streamcount.models.weights import available_models, read_card, resolve_model

FLOPS_CONVENTION = ("SKT paper: conv MACs + bias adds + ReLU elements + max-pool input "
                    "elements, one image")
_INPUT_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_MAX_SIDE = 16384


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``models`` and its sub-commands."""
    p = subparsers.add_parser("models", help="list, inspect, import and export models",
                              description="List, inspect, import and export counting models.")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    p.set_defaults(func=run, models_parser=p)

    ls = sub.add_parser("list", help="named models and architectures")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    info = sub.add_parser("info", help="architecture, parameters, FLOPs and card of a model (JSON)")
    info.add_argument("name", metavar="NAME", help="model name, weight file or architecture")
    info.add_argument("--input", default=f"{PAPER_INPUT_HW[0]}x{PAPER_INPUT_HW[1]}",
                      metavar="HxW", help="input size for the FLOP count (default %(default)s)")

    imp = sub.add_parser("import", help="convert a published checkpoint into a named model")
    imp.add_argument("file", metavar="FILE",
                     help="PyTorch checkpoint (.pth/.pth.tar/.pt), MCNN .h5 or .safetensors")
    imp.add_argument("--arch", choices=list(ARCHITECTURES), default=None,
                     help="architecture of the weights (default: the only one they fit)")
    imp.add_argument("--name", required=True, help="name to use with --model NAME")
    imp.add_argument("--force", action="store_true", help="replace a model of that name")
    imp.add_argument("--training-data", default=None, help="describe the training data")
    imp.add_argument("--licence", default=None, help="licence of the weights")

    cal = sub.add_parser("calibrate",
                         help="calibrate a model's int8 backends once, on representative frames",
                         description="Calibrate the int8 backends of a model on representative "
                                     "frames (e.g. images of its training data) and cache the "
                                     "result as the model's calibration: every later "
                                     "'streamcount count' reuses it and only checks fp32 parity "
                                     "on a few frames of its input.")
    cal.add_argument("name", metavar="NAME", help="model name or weight file")
    cal.add_argument("frames", metavar="FRAMES",
                     help="folder of images (spread evenly over it), an image or a video")
    cal.add_argument("--frames", dest="count", type=int, default=32, metavar="N",
                     help="calibration frames (default %(default)s)")
    cal.add_argument("--max-side", type=int, default=960, metavar="N",
                     help="longest model-input side the frames are prepared at "
                          "(default %(default)s, as 'count')")
    cal.add_argument("--backend", action="append", default=None, metavar="B",
                     help="int8 backend to calibrate (repeatable; default: openvino-int8)")

    exp = sub.add_parser("export", help="export a model's deploy graph (uint8 BGR in) to ONNX")
    exp.add_argument("name", metavar="NAME", help="model name, weight file or architecture")
    exp.add_argument("--format", choices=["onnx"], default="onnx", help="export format")
    exp.add_argument("--out", default=None, help="output file (default ./NAME.onnx)")
    exp.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                     help="torch.onnx exporter (default %(default)s)")
    exp.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18 / 17)")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the ``models`` action."""
    action = getattr(args, "models_command", None)
    if action == "list":
        return _list(args)
    if action == "info":
        return _info(args)
    if action == "import":
        return _import(args)
    if action == "export":
        return _export(args)
    if action == "calibrate":
        return _calibrate(args)
    args.models_parser.print_help()
    return 2


# ------------------------------------------------------------------------------------ list

def _metrics_text(card: ModelCard) -> str:
    return "; ".join(f"{m.mae:.1f}/{m.rmse:.1f} {m.dataset.removesuffix('/test_data')}"
                     for m in card.metrics) or "-"


def list_rows() -> list[dict[str, Any]]:
    """One row per named weight file, then one per architecture that has no weights."""
    rows: list[dict[str, Any]] = []
    params: dict[str, int] = {}

    def n_params(arch: str) -> int | None:
        if arch not in ARCHITECTURES:
            return None
        if arch not in params:  # counted once, then cached (streamcount.models.stats)
            params[arch] = arch_params(arch)
        return params[arch]

    covered: set[str] = set()
    for name, path in available_models().items():
        try:
            card = read_card(path)
        except ModelError as e:
            rows.append({"name": name, "arch": "?", "params": None, "training_data": "-",
                         "metrics": "-", "path": str(path), "error": str(e)})
            continue
        covered.add(card.arch)
        rows.append({"name": name, "arch": card.arch, "params": n_params(card.arch),
                     "training_data": card.training_data, "metrics": _metrics_text(card),
                     "path": str(path)})
    for arch in ARCHITECTURES:
        if arch not in covered:
            rows.append({"name": arch, "arch": arch, "params": n_params(arch),
                         "training_data": "-", "metrics": "-", "path": None})
    return rows


def _list(args: argparse.Namespace) -> int:
    rows = list_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("NAME", "ARCH", "PARAMS", "TRAINING DATA", "MAE/RMSE", "PATH")
    table = [header]
    for r in rows:
        path = r["path"] or "(architecture only: no weights)"
        if "error" in r:
            path = f"{path} (unreadable)"
        table.append((r["name"], r["arch"],
                      f"{r['params']:,}" if r["params"] is not None else "?",
                      _clip(r["training_data"], 48), r["metrics"], path))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------------------------ info

def parse_input_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``576x864``) into ``(H, W)``."""
    m = _INPUT_RE.match(text)
    if not m:
        raise InputError(f"--input '{text}': expected HEIGHTxWIDTH, e.g. 576x864")
    h, w = int(m.group(1)), int(m.group(2))
    if not (0 < h <= _MAX_SIDE and 0 < w <= _MAX_SIDE):
        raise InputError(f"--input '{text}': height and width must be 1..{_MAX_SIDE}")
    return h, w


def model_info(name: str, input_hw: tuple[int, int]) -> dict[str, Any]:
    """What ``models info`` prints: architecture, params, paper FLOPs and, for weights, the card."""
    card: ModelCard | None = None
    path: Path | None = None
    try:
        path = resolve_model(name)
    except ModelError:
        if name not in ARCHITECTURES:
            raise
    if path is not None:
        card = read_card(path)
        arch = card.arch
        if arch not in ARCHITECTURES:
            raise ModelError(f"{path}: unknown architecture '{arch}' in model card")
    else:
        arch = name
    spec = ARCHITECTURES[arch]
    flops = arch_flops(arch, input_hw)
    info: dict[str, Any] = {
        "name": card.name if card else name,
        "arch": arch,
        "description": spec.description,
        "params": arch_params(arch),
        "input": f"{input_hw[0]}x{input_hw[1]}",
        "flops": flops,
        "gflops": round(flops / 1e9, 2),
        "flops_convention": FLOPS_CONVENTION,
        "output_stride": spec.output_stride,
        "input_multiple": spec.input_multiple,
        "path": str(path) if path else None,
    }
    if card is not None:
        info["card"] = asdict(card)
    return info


def _info(args: argparse.Namespace) -> int:
    hw = parse_input_size(args.input)
    print(json.dumps(model_info(args.name, hw), indent=2))
    return 0


# ------------------------------------------------------------------------- import / export

def _import(args: argparse.Namespace) -> int:
    from streamcount.models.importers import import_checkpoint

    path = import_checkpoint(args.file, args.arch, args.name, overwrite=args.force,
                             training_data=args.training_data, licence=args.licence)
    card = read_card(path)
    print(f"imported {args.file} as '{card.name}' ({card.arch}) -> {path}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from streamcount.engine.model_calibration import (INT8_BACKENDS, calibrate_model,
                                                      calibration_frames)

    path = resolve_model(args.name)
    card = read_card(path)
    if args.max_side < card.input_multiple:
        raise InputError(f"--max-side must be at least {card.input_multiple}")
    frames, source = calibration_frames(Path(args.frames), args.count, args.max_side,
                                        card.input_multiple)
    for q in calibrate_model(str(path), frames, args.backend or INT8_BACKENDS, source):
        print(f"{q['backend']}: '{card.name}' calibrated on {source}: recipe "
              f"'{q.get('recipe')}', counts {100 * float(q.get('calibration_deviation', 0)):.2f} "
              f"% from fp32 on these frames")
    return 0


def _export(args: argparse.Namespace) -> int:
    from streamcount.models.export import export_onnx

    src = resolve_model(args.name)
    out = Path(args.out) if args.out else Path.cwd() / f"{read_card(src).name}.onnx"
    export_onnx(src, out, exporter=args.exporter, opset=args.opset)
    print(f"exported {args.name} to {out}")
    return 0
