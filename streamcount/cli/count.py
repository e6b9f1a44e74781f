"""``streamcount count INPUT...``: count people per region in a video, image, folder or stream.

Several inputs (positional, or ``--inputs FILE``) each get ``OUT/<name>``; ``--shard
INDEX/COUNT`` counts only the inputs that shard owns (see :mod:`streamcount.cli.inputs`), so an
Indexed Job's pods split a list of recordings without coordination."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streamcount.detect.counting import COUNTING_METHODS, DEFAULT_COUNTING
from streamcount.engine.factory import backend_names
from streamcount.engine.preprocess import DEFAULT_MAX_SIDE
from streamcount.engine.quantize import CALIBRATION_POLICIES
from streamcount.errors import InputError, UserError
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
                    "OUT/counts.csv (frame,time_s,region,count,method) and OUT/summary.json; "
                    "Ctrl-C stops early and keeps both valid for the frames processed.")
    p.add_argument("input", metavar="INPUT", nargs="*",
                   help="video file, image, folder of images (name order) or rtsp/http URL; "
                        "several inputs are counted one after the other into OUT/<name>")
    p.add_argument("--inputs", metavar="FILE",
                   help="also count the inputs listed in FILE (one per line, # comments; "
                        "relative to FILE's folder), each into OUT/<name>")
    p.add_argument("--shard", metavar="INDEX/COUNT",
                   help="count only the inputs replica INDEX (0-based) of COUNT owns, by "
                        "rendezvous hashing of their names (e.g. an Indexed Job: "
                        "$(JOB_COMPLETION_INDEX)/N)")
    p.add_argument("--regions", metavar="FILE", help="regions file (YAML or JSON)")
    p.add_argument("--fps", type=_positive_float, metavar="N",
                   help="sample N frames per second of media time (default: every frame)")
    p.add_argument("--model", metavar="M",
                   help="model file, imported name or architecture (default: the packaged model)")
    p.add_argument("--backend", default="auto", metavar="B",
                   help=f"inference backend: {', '.join(backend_names())} (default: auto, the "
                        "fastest whose counts stay within 2%% of fp32)")
    p.add_argument("--counting", choices=COUNTING_METHODS, default=DEFAULT_COUNTING,
                   help="how people are counted: auto (default: detection where people are few "
                        "and clearly visible, density elsewhere, per frame and region), density "
                        "(the density model only) or detect (the person detector only); the CSV "
                        "says which per row (method column)")
    p.add_argument("--scale", choices=("auto", "off"), default="auto",
                   help="auto (default): for videos and streams, scale the density model's "
                        "input so people have the size it counts best, from the person heights "
                        "the detector finds on the first frames (not in crowds); off: "
                        "--max-side only")
    p.add_argument("--calibration", choices=CALIBRATION_POLICIES, default="model",
                   help="int8 calibration: model (default: calibrated once per model and "
                        "cached; each input only gets auto's fp32 parity check on a few of its "
                        "frames) or clip (calibrate on this input's own frames)")
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
    from streamcount.cli.inputs import plan, read_inputs_file
    from streamcount.sharding import Shard

    inputs = list(args.input) + (read_inputs_file(args.inputs) if args.inputs else [])
    if not inputs:
        raise InputError("no input: give INPUT or --inputs FILE")
    shard = Shard.parse(args.shard) if args.shard is not None else None
    jobs = plan(inputs, args.out, shard=shard, separate=bool(args.inputs))
    if shard is not None and not args.quiet:
        print(f"shard {shard}: {len(jobs)} of {len(inputs)} input(s)", file=sys.stderr)
    failed: list[str] = []
    for job in jobs:
        one = argparse.Namespace(**{**vars(args), "input": job.input, "out": str(job.out_dir)})
        try:
            if _count_one(one) == 130:
                return 130
        except UserError as e:
            if len(jobs) == 1:
                raise
            print(f"streamcount: error: {e}", file=sys.stderr)
            failed.append(job.name)
    if failed:
        raise InputError(f"{len(failed)} of {len(jobs)} inputs failed: {', '.join(failed)}")
    return 0


def _count_one(args: argparse.Namespace) -> int:
    """Count ``args.input`` into ``args.out``; 130 when interrupted."""
    summary = count_input(
        args.input, model=args.model, backend=args.backend, regions=args.regions, fps=args.fps,
        max_side=args.max_side, out_dir=args.out, annotate=args.annotate, plot=args.plot,
        batch=args.batch, threads=args.threads, progress=not args.quiet,
        counting=args.counting, scale=args.scale, calibration=args.calibration)
    if not args.quiet:
        print(format_summary(summary))
    return 130 if summary.get("interrupted") else 0


def _counting_lines(counting: dict[str, Any] | None) -> list[str]:
    if not counting:
        return []
    methods = ", ".join(f"{m} {n}" for m, n in sorted(counting.get("methods", {}).items()))
    lines = [f"counting  {counting['counting']}" + (f" (frames by method: {methods})"
                                                    if methods else "")]
    scale = counting.get("scale")
    if scale:
        lines.append(f"scale     {scale['scale']:.2f} (people {scale['person_height_px']} px in "
                     f"{scale['frames']} sparse probe frames)"
                     + ("; counted by detection" if scale["detect_only"] else ""))
    return lines


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
        *_counting_lines(summary.get("counting")),
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
