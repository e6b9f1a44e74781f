"""``streamcount calibrate INPUT --counts FILE``: pick a camera's inference size from a few
frames counted by eye (see :mod:`streamcount.pipeline.calibrate`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from streamcount.errors import InputError


def _sides(text: str) -> list[int]:
    try:
        sides = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}"
                                         ) from None
    if not sides or min(sides) < 32:
        raise argparse.ArgumentTypeError(f"sides must be integers >= 32: {text!r}")
    return sides


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``calibrate``."""
    p = subparsers.add_parser(
        "calibrate", help="pick a camera's inference size from a few frames counted by eye",
        description="Fit the model-input size (max_side) of one camera to true counts of a few "
                    "of its frames (3-10, counted by eye), so that people come out at a size "
                    "the model counts right. Prints every candidate's error and the choice; "
                    "optionally writes it into a camera of a service config.")
    p.add_argument("input", metavar="INPUT",
                   help="the camera's video file, folder of images or stream URL")
    p.add_argument("--counts", required=True, metavar="CSV",
                   help="true counts: CSV with header 'frame,count' (frame = 0-based index, "
                        "or image file name for a folder)")
    p.add_argument("--model", metavar="M", help="model (default: the packaged default)")
    p.add_argument("--sides", type=_sides, metavar="N,N,...",
                   help="candidate max_side values (default: 100%%..20%% of the native side)")
    p.add_argument("--config", metavar="FILE",
                   help="service config to write the chosen max_side into (with --camera)")
    p.add_argument("--camera", metavar="NAME", help="the camera in --config")
    p.add_argument("--out", metavar="FILE",
                   help="write the calibration (max_side, every candidate's fit, a "
                        "recommended gain if any) as JSON")
    p.add_argument("--threads", type=int, metavar="N", help="inference threads")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``calibrate``; 0 on success."""
    from streamcount.engine.torch_cpu import TorchBackend
    from streamcount.models.weights import load_model, resolve_model
    from streamcount.pipeline.calibrate import calibrate, format_report, read_frames, read_truth

    if bool(args.config) != bool(args.camera):
        raise InputError("--config and --camera go together (the camera to calibrate)")
    truth = read_truth(args.counts)
    images = read_frames(args.input, truth)
    net, card = load_model(resolve_model(args.model))
    backend = TorchBackend(net, card, threads=args.threads)
    cal = calibrate(images, [r.count for r in truth], backend.infer,
                    multiple=card.input_multiple, sides=args.sides)
    print(format_report(cal))
    result = {"input": str(args.input), "counts": str(args.counts), "model": card.name,
              **cal.as_dict()}
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n")
        except OSError as e:
            raise InputError(f"{out}: cannot write ({e.strerror or e})") from None
        print(f"wrote {out}")
    if args.config:
        from streamcount.config.edit import set_camera_value

        note = f"streamcount calibrate: MAE {cal.mae:.2f} on {len(truth)} frames"
        set_camera_value(args.config, args.camera, "max_side", cal.max_side, comment=note)
        written = f"max_side {cal.max_side}"
        # a gain when recommended; 1.0 where an earlier calibration had written one
        if cal.gain is not None or _has_gain(args.config, args.camera):
            gain = cal.gain if cal.gain is not None else 1.0
            set_camera_value(args.config, args.camera, "gain", gain,
                             comment=f"streamcount calibrate: MAE {cal.mae_with_gain:.2f} with "
                             f"it" if cal.gain is not None else "streamcount calibrate: none "
                             f"needed")
            written += f" and gain {gain:g}"
        print(f"wrote {written} into camera '{args.camera}' of {args.config}; reload the "
              f"service (SIGHUP) to apply it")
    else:
        print(f"count with it: streamcount count {args.input} --max-side {cal.max_side}"
              + (f" (and multiply density counts by {cal.gain:g})" if cal.gain is not None
                 else ""))
    return 0


def _has_gain(config: str, camera: str) -> bool:
    """Whether ``camera`` in the YAML ``config`` sets ``gain``."""
    import yaml

    doc = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    return any(isinstance(c, dict) and c.get("name") == camera and "gain" in c
               for c in doc.get("cameras") or [])


if __name__ == "__main__":  # pragma: no cover
    from streamcount.cli.main import main

    sys.exit(main(["calibrate", *sys.argv[1:]]))
