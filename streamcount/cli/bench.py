"""``streamcount bench``: model throughput and end-to-end stream capacity.

``bench model``: latency and frames/s per backend x precision x batch x input size.
``bench capacity``: how many camera streams at N inferences/s each this machine sustains
(``--rtsp``: the live service itself on real RTSP cameras from gst-rtsp-server).
Both print a table and, with ``--json FILE``, write every number (and the machine) as JSON.
Also runnable as ``python -m streamcount.bench ...`` (no other command's dependencies).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamcount.engine.preprocess import DEFAULT_MAX_SIDE
from streamcount.errors import InputError

log = logging.getLogger(__name__)

def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _ints(text: str) -> list[int]:
    try:
        vals = [int(p) for p in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _sizes(text: str) -> list[tuple[int, int]]:
    from streamcount.bench.sizes import parse_sizes

    try:
        return parse_sizes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _size(text: str) -> tuple[int, int]:
    from streamcount.bench.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return v
    return parse


def _default_backends() -> list[str]:
    """Every backend the factory knows (CPU and GPU)."""
    from streamcount.engine.factory import BACKENDS

    return list(BACKENDS)


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``model`` and ``capacity`` sub-commands to the ``bench`` parser ``p``."""
    sub = p.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    m = sub.add_parser("model", help="throughput per backend, precision, batch and input size",
                       description="Time the model on each backend x precision x batch x "
                                   "input size; unavailable combinations are listed with why.")
    m.add_argument("--model", metavar="M", help="model file, name or architecture (random "
                   "weights if it has none imported); default: the default model")
    m.add_argument("--backends", type=_csv, metavar="B,...",
                   help="backends to time (default: every known backend)")
    m.add_argument("--precisions", type=_csv, default=["fp32", "fp16"], metavar="P,...",
                   help="precisions for torch/cuda/tensorrt: fp32,fp16,int8 (default fp32,fp16)")
    m.add_argument("--batch", type=_ints, default=[1, 4], metavar="N,...",
                   help="batch sizes (default 1,4)")
    m.add_argument("--sizes", type=_sizes, default=_sizes("540p,720p,1080p"), metavar="S,...",
                   help="input sizes: 360p,540p,720p,1080p or HxW (default 540p,720p,1080p)")
    m.add_argument("--runs", type=_positive(int), default=20, metavar="N",
                   help="timed runs per combination (default 20)")
    m.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed runs (default 3)")
    m.add_argument("--max-seconds", type=_positive(float), default=10.0, metavar="S",
                   help="stop timing a combination after S seconds (default 10)")
    m.add_argument("--threads", type=_positive(int), metavar="N", help="CPU threads")
    m.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    m.set_defaults(func=run_model)

    c = sub.add_parser("capacity", help="concurrent streams sustained at a per-stream fps",
                       description="Simulate N cameras (a looped clip decoded in real time, one "
                                   "reader thread each) feeding the scheduler and one backend; "
                                   "double N until the streams miss their inference rate, then "
                                   "bisect. Reports the largest N and its frame-to-count latency.")
    c.add_argument("--model", metavar="M", help="as for 'bench model'")
    c.add_argument("--backend", default="auto", metavar="B",
                   help="backend (default auto: tensorrt > cuda > best CPU)")
    c.add_argument("--precision", metavar="P", help="precision for torch/cuda/tensorrt")
    c.add_argument("--fps", type=_positive(float), default=5.0, metavar="N",
                   help="inferences per second per stream (default 5)")
    c.add_argument("--source", metavar="FILE", help="clip to loop (default: a generated "
                   "H.264 clip of --size)")
    c.add_argument("--size", type=_size, default=_size("1080p"), metavar="S",
                   help="frame size of the generated clip (default 1080p)")
    c.add_argument("--max-side", type=_positive(int), default=DEFAULT_MAX_SIDE, metavar="N",
                   help=f"model input: longer side at most N (default {DEFAULT_MAX_SIDE})")
    c.add_argument("--duration", type=_positive(float), default=6.0, metavar="S",
                   help="measured seconds per trial (default 6)")
    c.add_argument("--warmup", type=float, default=2.0, metavar="S",
                   help="seconds before each trial's measurement (default 2)")
    c.add_argument("--start", type=_positive(int), default=1, metavar="N",
                   help="streams in the first trial (default 1)")
    c.add_argument("--max-streams", type=_positive(int), default=256, metavar="N",
                   help="stop searching at N streams (default 256)")
    c.add_argument("--max-trials", type=_positive(int), default=10, metavar="N",
                   help="at most N trials (default 10)")
    c.add_argument("--max-batch", type=_positive(int), metavar="N",
                   help="scheduler batch limit (default 16 on a GPU, 4 on the CPU)")
    c.add_argument("--hwaccel", choices=("auto", "cuda", "none"), default="auto",
                   help="NVDEC decoding via PyAV where available (default auto)")
    c.add_argument("--threads", type=_positive(int), metavar="N", help="CPU threads")
    c.add_argument("--rtsp", action="store_true",
                   help="serve --source (made 1080p25 H.264, looped) from a real "
                        "gst-rtsp-server and run the live service on N RTSP cameras with their "
                        "default counting (needs ffmpeg and Debian's python3-gi)")
    c.add_argument("--counting", choices=("auto", "density", "detect"), default="auto",
                   help="--rtsp: the cameras' counting method (default auto)")
    c.add_argument("--max-p95", type=_positive(float), default=1.0, metavar="S",
                   help="--rtsp: a trial passes only if the 95th percentile of frame-to-count "
                        "latency is at most S seconds (default 1)")
    c.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    c.set_defaults(func=run_capacity)
    return p


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``bench`` sub-command."""
    p = subparsers.add_parser("bench", help="benchmark backends and stream capacity",
                              description=__doc__.split("\n\n")[1])
    return configure(p)


def run(args: argparse.Namespace) -> int:
    return int(args.func(args))


def _write_json(path: str | None, data: dict[str, Any], quiet: bool = False) -> None:
    if not path:
        return
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(data, indent=1, default=str))
    except OSError as e:
        raise InputError(f"{path}: cannot write JSON ({e.strerror or e})") from None
    if not quiet:
        print(f"wrote {p}")


def run_model(args: argparse.Namespace) -> int:
    from streamcount.bench.model import (TABLE_HEADER, bench_model, format_row,
                                         load_bench_model, machine_info, rows_to_json)
    from streamcount.bench.sizes import size_label

    net, card, weights = load_bench_model(args.model)
    backends = args.backends or _default_backends()
    print(f"model {card.name} ({card.arch}, weights: {weights}); backends {','.join(backends)}; "
          f"precisions {','.join(args.precisions)}; batch {','.join(map(str, args.batch))}; "
          f"sizes {','.join(size_label(s) for s in args.sizes)}")
    print(TABLE_HEADER + "\n" + "-" * len(TABLE_HEADER), flush=True)
    head = {"kind": "bench-model", "machine": machine_info(),
            "model": {"name": card.name, "arch": card.arch, "sha256": card.sha256,
                      "weights": weights},
            "settings": {"backends": backends, "precisions": args.precisions,
                         "batch": args.batch, "sizes": [size_label(s) for s in args.sizes],
                         "runs": args.runs, "warmup": args.warmup,
                         "max_seconds": args.max_seconds}}
    done: list[Any] = []

    def progress(row: Any) -> None:
        print(format_row(row), flush=True)
        done.append(row)
        if args.json:  # rewritten after every row: a run cut short keeps what it measured
            _write_json(args.json, head | {"complete": False, "rows": rows_to_json(done)},
                        quiet=True)

    rows = bench_model(net, card, backends=backends, precisions=args.precisions,
                       batches=args.batch, sizes=args.sizes, warmup=args.warmup, runs=args.runs,
                       max_seconds=args.max_seconds, threads=args.threads, progress=progress)
    _write_json(args.json, head | {"complete": True, "rows": rows_to_json(rows)})
    return 0


def _capacity_backend(args: argparse.Namespace, net: Any, card: Any) -> Any:
    from streamcount.bench.model import make_backend

    if args.backend == "auto":  # tensorrt > cuda > the fastest CPU backend, with fallback
        from streamcount.engine.factory import create_backend

        return create_backend("auto", (net, card), threads=args.threads)
    precision = args.precision or ("fp16" if args.backend in ("cuda", "tensorrt") else "fp32")
    return make_backend(args.backend, precision, net, card, sizes=[], max_batch=16,
                        threads=args.threads)


def run_capacity(args: argparse.Namespace) -> int:
    if args.rtsp:
        return run_rtsp_capacity(args)
    from streamcount.bench.capacity import TrialSettings, find_capacity, format_result
    from streamcount.bench.model import load_bench_model, machine_info
    from streamcount.bench.streams import clip_info, ensure_clip, probe_decoder
    from streamcount.engine.preprocess import plan_input_size

    net, card, weights = load_bench_model(args.model)
    if args.source:
        clip = Path(args.source)
        if not clip.is_file():
            raise InputError(f"source clip not found: {args.source}")
    else:
        clip = ensure_clip(args.size)
    h, w, _ = clip_info(clip)
    size = plan_input_size(h, w, args.max_side, card.input_multiple)
    if args.backend == "tensorrt":  # build the engine for the one input size up front
        from streamcount.bench.model import make_backend

        backend = make_backend("tensorrt", args.precision or "fp16", net, card, sizes=[size],
                               max_batch=args.max_batch or 16, threads=args.threads)
    else:
        backend = _capacity_backend(args, net, card)
    gpu = str(backend.describe().get("device", "cpu")).startswith("cuda")
    decode = probe_decoder(clip, args.hwaccel)
    if args.hwaccel == "cuda" and decode.name != "cuda":
        log.warning("NVDEC requested but unavailable, decoding in software: %s", decode.note)
    settings = TrialSettings(clip=clip, fps=args.fps, max_side=args.max_side, decode=decode,
                             duration_s=args.duration, warmup_s=args.warmup,
                             max_batch=args.max_batch or (16 if gpu else 4))
    print(f"capacity: backend {backend.describe().get('backend')}, clip {clip} ({w}x{h}), "
          f"decode {decode.name}, target {args.fps:g} fps per stream", flush=True)
    head = {"kind": "bench-capacity", "machine": machine_info(),
            "model": {"name": card.name, "arch": card.arch, "weights": weights},
            "backend": backend.describe(), "decode": decode.name, "decode_note": decode.note}
    trials: list[dict[str, Any]] = []

    def progress(t: Any) -> None:
        print(f"  {t.streams} streams: {t.fps_mean:.2f} fps/stream (min {t.fps_min:.2f}), "
              f"p95 {t.latency_p95_s}s, {'pass' if t.passed else 'fail'}", flush=True)
        trials.append(asdict(t))
        if args.json:  # a run cut short keeps the trials it finished
            _write_json(args.json, head | {"complete": False, "trials": trials}, quiet=True)

    result = find_capacity(backend, settings, start=args.start, max_streams=args.max_streams,
                           max_trials=args.max_trials, progress=progress)
    print(format_result(result))
    _write_json(args.json, head | {"complete": True, "result": result.to_json()})
    return 0


def run_rtsp_capacity(args: argparse.Namespace) -> int:
    """``bench capacity --rtsp``: the live service on N cameras of a real RTSP server."""
    from streamcount.bench.capacity import format_result
    from streamcount.bench.live_capacity import LiveSettings, find_live_capacity, rtsp_clip
    from streamcount.bench.model import machine_info
    from streamcount.bench.rtsp_server import RtspServer, gst_rtsp_missing
    from streamcount.engine.factory import create_backend
    from streamcount.models.weights import load_model, resolve_model

    if not args.source:
        raise InputError("--rtsp needs --source CLIP (a real recording, e.g. vtest.avi)")
    missing = gst_rtsp_missing()
    if missing:
        raise InputError(f"--rtsp: {missing}")
    clip = rtsp_clip(args.source)
    model_path = resolve_model(args.model)
    loaded = load_model(model_path)
    backend = create_backend(args.backend, model_path, threads=args.threads)
    with RtspServer(clip) as server:
        settings = LiveSettings(url=server.url, fps=args.fps, duration_s=args.duration,
                                warmup_s=args.warmup, max_batch=args.max_batch or 4,
                                max_p95_s=args.max_p95, counting=args.counting,
                                max_side=args.max_side)
        print(f"capacity (live service, RTSP): backend {backend.describe().get('backend')}, "
              f"{server.url} serving {clip}, counting {args.counting}, target {args.fps:g} "
              f"fps per camera, p95 latency <= {args.max_p95:g} s", flush=True)
        head = {"kind": "bench-capacity-rtsp", "machine": machine_info(),
                "command": "streamcount " + " ".join(sys.argv[1:]),
                "model": {"name": loaded[1].name, "arch": loaded[1].arch,
                          "path": str(model_path)},
                "backend": backend.describe(), "settings": asdict(settings),
                "load_average_start": list(os.getloadavg())}
        trials: list[dict[str, Any]] = []

        def progress(t: Any) -> None:
            print(f"  {t.streams} cameras: {t.fps_mean:.2f} fps/camera (min {t.fps_min:.2f}), "
                  f"p95 {t.latency_p95_s} s, dropped {t.dropped}, "
                  f"{'pass' if t.passed else 'fail'}", flush=True)
            trials.append(asdict(t))
            if args.json:  # a run cut short keeps the trials it finished
                _write_json(args.json, head | {"complete": False, "trials": trials},
                            quiet=True)

        result = find_live_capacity(backend, settings, clip, start=args.start,
                                    max_streams=args.max_streams, max_trials=args.max_trials,
                                    model=str(model_path), threads=args.threads,
                                    progress=progress)
    print(format_result(result))
    _write_json(args.json, head | {"complete": True, "result": result.to_json(),
                                   "load_average_end": list(os.getloadavg())})
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m streamcount.bench``: the bench command alone."""
    from streamcount.errors import UserError

    parser = configure(argparse.ArgumentParser(prog="python -m streamcount.bench",
                                               description=__doc__.split("\n\n")[1]))
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"streamcount: error: {e}", file=sys.stderr)
        return e.exit_code

