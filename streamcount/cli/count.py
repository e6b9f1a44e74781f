"""``streamcount count INPUT``: count people per region in a video, image, folder or stream."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streamcount.engine.factory import backend_names
from streamcount.engine.preprocess import DEFAULT_MAX_SIDE
from streamcount.pipeline.offline import DEFAULT_BATCH, DEFAULT_OUT_DIR, count_input



def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return v


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``count``."""
    p = subparsers.add_parser(
        "count", help="count people in a video file, image, folder of images or stream URL",
        description="Count people per region, as fast as the machine allows. Writes "
                    "OUT/counts.csv (frame,time_s,region,count) and OUT/summary.json; Ctrl-C "
                    "stops early and keeps both valid for the frames processed.")
    p.add_argument("input", metavar="INPUT",
                   help="video file, image, folder of images (name order) or rtsp/http URL")
    p.add_argument("--regions", metavar="FILE", help="regions file (YAML or JSON)")
    p.add_argument("--fps", type=_positive_float, metavar="N",
                   help="sample N frames per second of media time (default: every frame)")
    p.add_argument("--model", metavar="M",
                   help="model file, imported name or architecture (default: the packaged model)")
    p.add_argument("--backend", default="auto", metavar="B",
                   help=f"inference backend: {', '.join(backend_names())} (default: auto, the "
                        "fastest whose counts stay within 2%% of fp32)")
    p.add_argument("--max-side", type=_positive_int, default=DEFAULT_MAX_SIDE, metavar="N",
                   help=f"longest model-input side in pixels (default {DEFAULT_MAX_SIDE}; "
                        "frames are never upscaled)")
    p.add_argument("--out", default=DEFAULT_OUT_DIR, metavar="DIR",
                   help=f"output folder (default ./{DEFAULT_OUT_DIR})")
    p.add_argument("--annotate", action="store_true",
                   help="also write OUT/annotated.mp4 (heat-map, regions, counts)")
    p.add_argument("--plot", action="store_true", help="also write OUT/counts.png")
    p.add_argument("--batch", type=_positive_int, default=DEFAULT_BATCH, metavar="N",
                   help=f"frames per inference call (default {DEFAULT_BATCH})")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="inference threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``count``; 0 on success, 130 when interrupted (outputs still written)."""
    summary = count_input(
        args.input, model=args.model, backend=args.backend, regions=args.regions, fps=args.fps,
        max_side=args.max_side, out_dir=args.out, annotate=args.annotate, plot=args.plot,
        batch=args.batch, threads=args.threads, progress=not args.quiet)
    if not args.quiet:
        print(format_summary(summary))
    return 130 if summary.get("interrupted") else 0


def format_summary(summary: dict[str, Any]) -> str:
    """A short human-readable table of a run's summary."""
    backend = summary.get("backend") or {}
    size = summary.get("input_size")
    lines = [
        f"input     {summary.get('input')}"
        + ("   (interrupted)" if summary.get("interrupted") else ""),
        f"model     {summary['model']['name']} ({summary['model']['arch']}) on "
        f"{backend.get('backend', '?')} {backend.get('precision', '')}".rstrip(),
        f"frames    {summary['frames_processed']} at {summary.get('processing_fps') or 0:.1f} "
        f"frames/s, input {size[1]}x{size[0]}" if size else
        f"frames    {summary['frames_processed']}",
        "",
        f"{'region':<20} {'mean':>9} {'max':>9} {'max at (s)':>11}",
    ]
    for name, st in summary["regions"].items():
        if st["mean"] is None:
            lines.append(f"{name:<20} {'-':>9} {'-':>9} {'-':>11}")
        else:
            lines.append(f"{name:<20} {st['mean']:>9.1f} {st['max']:>9.1f} "
                         f"{st['max_time_s']:>11.1f}")
    outputs = summary.get("outputs") or {}
    if outputs:
        lines += ["", "wrote     " + ", ".join(str(v) for v in outputs.values())]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    from streamcount.cli.main import main

    sys.exit(main(["count", *sys.argv[1:]]))
