"""Export a training checkpoint as a streamcount model file (student only, no adapters).

``python -m training.export CHECKPOINT --out FILE [--name NAME] [--data ROOT --eval SPLIT ...]
[--metrics RESULT.json ...]``

The file is a safetensors file with a :class:`~streamcount.models.card.ModelCard` in its
header (architecture, preprocessing, training data, recipe, licence, measured metrics), usable
at once as ``streamcount count --model FILE``. ``--eval`` evaluates the exported file with
:mod:`training.evaluate` (streamcount's inference path) and records the results in the card;
``--metrics`` records results from earlier ``training.evaluate --out`` JSON files.
Given an exported ``.safetensors`` instead of a checkpoint, it writes the same weights with
the card updated (``--name``, ``--metrics``, ``--source``, ``--training-data``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from streamcount.engine.preprocess import DEFAULT_MAX_SIDE
from streamcount.errors import UserError
from streamcount.models.card import Metric, ModelCard
from streamcount.models.weights import load_model, save_model

log = logging.getLogger(__name__)

DEFAULT_LICENCE = ("Apache-2.0 (weights trained by the streamcount project); training data "
                   "ShanghaiTech, a research-use dataset: check its terms for your use")


def describe_recipe(cfg: dict[str, Any]) -> str:
    """A one-line recipe summary from a resolved training config."""
    t, o, r, d = cfg["task"], cfg["optim"], cfg["run"], cfg["data"]
    c = d["crop"]
    crop = (f"fixed {c['crop_size']}px crops, scale {c['scale'][0]}-{c['scale'][1]}"
            if c["mode"] == "fixed" else f"ratio crops {c['ratio'][0]}-{c['ratio'][1]}")
    if c["mode"] == "fixed" and c.get("scale_dist", "uniform") != "uniform":
        crop += f" ({c['scale_dist']})"
    if c["mode"] == "fixed" and c.get("on_people"):
        crop += f", {c['on_people']:g} of them around a head"
    return (f"{t['kind']} ({'GT only' if t['kind'] != 'skt' else 'SKT distillation'}), "
            f"{o['name']} lr {o['lr']:g} {o['schedule']} wd {o['weight_decay']:g}"
            + (f" (weights averaged, decay {o['ema_decay']:g})" if o.get("ema_decay") else "")
            + ", "
            f"batch {r['batch_size']}, {crop}, flip {c['flip']}, amp {r['amp']}, "
            f"config '{cfg['name']}'")


def metric_from_result(res: dict[str, Any]) -> Metric:
    """A card Metric from a ``training.evaluate`` JSON result."""
    ds = f"{res.get('dataset', 'dataset')}/{res['split']}"
    return Metric(dataset=ds, mae=round(float(res["mae"]), 3), rmse=round(float(res["rmse"]), 3),
                  images=int(res["images"]), max_side=res.get("max_side"))


def export(checkpoint: str | Path, out: str | Path, name: str | None = None,
           training_data: str | None = None, licence: str = DEFAULT_LICENCE,
           metrics: list[Metric] | None = None, source: str = "",
           val_result: dict[str, Any] | None = None, fp16: bool = False) -> ModelCard:
    """Write the checkpoint's deploy network and card to ``out``; returns the stored card.

    ``fp16`` stores the weights as float16 (teachers: half the size; never the optimizer)."""
    from training.checkpointing import deploy_network, load_checkpoint

    ck = load_checkpoint(checkpoint)
    cfg = ck["config"]
    net = deploy_network(ck)
    d = cfg["data"]
    val = val_result or ck.get("metrics") or {}
    extra: dict[str, Any] = {
        "checkpoint": Path(checkpoint).name, "epoch": ck.get("epoch"),
        "iterations": ck.get("global_it"), "split_seed": d["split_seed"],
        "validation": {"images": len(ck.get("split", {}).get("val", [])),
                       "split": f"hold-out of {d['train_split']}",
                       "mae": val.get("mae"), "rmse": val.get("rmse"),
                       "max_side": d.get("val_max_side")},
        "density_rule": ck.get("split", {}).get("rule"),
        "target_scale": d.get("target_scale", 1.0),
        "seed": cfg["run"]["seed"],
    }
    card = ModelCard.for_arch(
        ck["arch"], name=name or Path(out).stem,
        training_data=training_data or f"{d['dataset']} {d['train_split']} "
        f"(minus {extra['validation']['images']} held-out validation images)",
        recipe=describe_recipe(cfg), licence=licence, source=source or "training.export",
        metrics=tuple(metrics or ()), extra=extra)
    return save_model(out, net.eval(), card, dtype=torch.float16 if fp16 else None)


def recard(model_file: str | Path, out: str | Path, name: str | None = None,
           metrics: list[Metric] | None = None, source: str = "",
           training_data: str | None = None, fp16: bool = False) -> ModelCard:
    """Write an already exported model file again with its card updated: a new name, measured
    metrics (replacing the stored ones when given), source or training data. The weights are
    unchanged (a model trained elsewhere, e.g. on a lent GPU, whose checkpoint stayed there)."""
    net, card = load_model(model_file)
    kw: dict[str, Any] = {}
    if name:
        kw["name"] = name
    if metrics:
        kw["metrics"] = tuple(metrics)
    if source:
        kw["source"] = source
    if training_data:
        kw["training_data"] = training_data
    return save_model(out, net.eval(), card.with_(**kw), dtype=torch.float16 if fp16 else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.export",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name")
    ap.add_argument("--training-data")
    ap.add_argument("--licence", default=DEFAULT_LICENCE)
    ap.add_argument("--source", default="")
    ap.add_argument("--metrics", nargs="*", default=[], help="training.evaluate JSON results")
    ap.add_argument("--val", help="training.evaluate --val-of JSON result for the card "
                                  "(default: the checkpoint's own validation metrics)")
    ap.add_argument("--data", help="dataset root for --eval")
    ap.add_argument("--dataset", default="shanghaitech")
    ap.add_argument("--eval", nargs="*", default=[], help="splits to evaluate and record")
    ap.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    ap.add_argument("--fp16", action="store_true", help="store the weights as float16")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        metrics = [metric_from_result(json.loads(Path(m).read_text())) for m in args.metrics]
        val = json.loads(Path(args.val).read_text()) if args.val else None
        if args.checkpoint.endswith(".safetensors"):  # an exported model: update its card
            if args.eval or args.val:
                raise UserError(f"{args.checkpoint}: --eval and --val need a training "
                                "checkpoint; record results of a model file with --metrics")
            card = recard(args.checkpoint, args.out, args.name, metrics, args.source,
                          args.training_data, fp16=args.fp16)
            print(f"wrote {args.out}: {card.arch}, sha256 {card.sha256[:12]}")
            return 0
        card = export(args.checkpoint, args.out, args.name, args.training_data, args.licence,
                      metrics, args.source, val, fp16=args.fp16)
        if args.eval:
            if not args.data:
                raise UserError("--eval needs --data ROOT")
            from training.datasets import load_items
            from training.evaluate import evaluate_items

            net, card = load_model(args.out)
            for split in args.eval:
                res = evaluate_items(net, card, load_items(args.dataset, args.data, split),
                                     args.max_side or None)
                res.update(dataset=args.dataset, split=split)
                metrics.append(metric_from_result(res))
                print(f"{split}: mae {res['mae']:.3f} rmse {res['rmse']:.3f} "
                      f"({res['images']} images, max side {args.max_side})")
            card = export(args.checkpoint, args.out, args.name, args.training_data,
                          args.licence, metrics, args.source, val, fp16=args.fp16)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {card.arch}, sha256 {card.sha256[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
